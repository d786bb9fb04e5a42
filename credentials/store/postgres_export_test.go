package store

// The List queries, for the test that PostgreSQL scans them on the
// primary key index.
const (
	PgListFromForTest  = pgListFrom
	PgListAfterForTest = pgListAfter
)
