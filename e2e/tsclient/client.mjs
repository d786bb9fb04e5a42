// A thin driver around the official MCP TypeScript SDK client
// (@modelcontextprotocol/sdk, pinned in package.json), run by
// e2e/sdk_clients_test.go.
//
// Usage: node client.mjs <MCP endpoint URL>
//
// The Go test sends one JSON command per line on stdin and reads one JSON
// line per reply on stdout:
//
//   -> {"id": 1, "op": "connect"}
//   <- {"reply": 1, "ok": true, "result": {...}}
//
// Sign-in is headless: the SDK's OAuthClientProvider.redirectToAuthorization
// writes {"event": "authorize", "url": "..."} on stdout, the Go side signs in
// at the development IdP's login and consent forms (oauthtest.Authorize) and
// answers on stdin with {"op": "callback", "url": "<redirect URI with code>"}.
// What the application does around the SDK (finishAuth, then reconnect or
// retry, as the SDK's own examples do) is reported in result.surfaced: every
// error the SDK threw on the way, exactly as thrown.
//
// Nothing secret is written to stderr; tokens leave only in the reply to the
// "tokens" command, which the Go test reads and never logs.

import { createInterface } from 'node:readline';
import { randomBytes } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { auth, UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';

const endpoint = new URL(process.argv[2]);
const redirectUrl = 'http://127.0.0.1:33418/callback';

function emit(obj) {
    process.stdout.write(JSON.stringify(obj) + '\n');
}

// Callback URLs the Go side sent, waiting to be taken by a sign-in.
const callbacks = [];
let callbackWaiter = null;

function nextCallback() {
    if (callbacks.length > 0) {
        return Promise.resolve(callbacks.shift());
    }
    return new Promise(resolve => {
        callbackWaiter = resolve;
    });
}

// An in-memory OAuthClientProvider, as a CLI or desktop client keeps one:
// dynamic registration (RFC 7591) as a public client on a loopback
// redirect URI. firstScope, when set, replaces the scope of the first
// authorization request only: a client that asks for the least it needs
// up front and lets step-up widen it.
class Provider {
    constructor({ firstScope } = {}) {
        this.firstScope = firstScope;
        this.authorizations = 0;
        this._client = undefined;
        this._tokens = undefined;
        this._verifier = undefined;
        this._state = undefined;
        this._discovery = undefined;
        this.pendingState = undefined;
    }
    get redirectUrl() {
        return redirectUrl;
    }
    get clientMetadata() {
        return {
            client_name: 'mcpauthz e2e TypeScript SDK client',
            redirect_uris: [redirectUrl],
            grant_types: ['authorization_code', 'refresh_token'],
            response_types: ['code'],
            token_endpoint_auth_method: 'none'
        };
    }
    state() {
        this._state = randomBytes(16).toString('hex');
        return this._state;
    }
    clientInformation() {
        return this._client;
    }
    saveClientInformation(info) {
        this._client = info;
    }
    tokens() {
        return this._tokens;
    }
    saveTokens(tokens) {
        this._tokens = tokens;
    }
    saveCodeVerifier(v) {
        this._verifier = v;
    }
    codeVerifier() {
        return this._verifier;
    }
    discoveryState() {
        return this._discovery;
    }
    saveDiscoveryState(s) {
        this._discovery = s;
    }
    invalidateCredentials(scope) {
        if (scope === 'all' || scope === 'client') this._client = undefined;
        if (scope === 'all' || scope === 'tokens') this._tokens = undefined;
        if (scope === 'all' || scope === 'verifier') this._verifier = undefined;
        if (scope === 'all' || scope === 'discovery') this._discovery = undefined;
    }
    redirectToAuthorization(url) {
        this.authorizations++;
        if (this.authorizations === 1 && this.firstScope) {
            url.searchParams.set('scope', this.firstScope);
        }
        this.pendingState = url.searchParams.get('state');
        emit({ event: 'authorize', url: url.href });
    }
}

// takeCode waits for the Go side's callback and returns its code, checking
// state and iss as a client must.
async function takeCode(provider) {
    const cb = new URL(await nextCallback());
    const err = cb.searchParams.get('error');
    if (err) {
        throw new Error(`authorization failed: ${err}: ${cb.searchParams.get('error_description') ?? ''}`);
    }
    if (cb.searchParams.get('state') !== provider.pendingState) {
        throw new Error('authorization callback: state mismatch');
    }
    const iss = cb.searchParams.get('iss');
    const asURL = provider._discovery?.authorizationServerMetadata?.issuer;
    if (iss && asURL && iss !== asURL) {
        throw new Error('authorization callback: iss mismatch');
    }
    return cb.searchParams.get('code');
}

function describe(e) {
    if (!(e instanceof Error)) {
        return { name: typeof e, message: String(e) };
    }
    const d = { name: e.constructor?.name ?? e.name, message: e.message };
    if (e.code !== undefined) d.code = e.code;
    if (e.data !== undefined) d.data = e.data;
    return d;
}

let provider = new Provider();
let client;
let transport;

function newTransport(opts = {}) {
    return new StreamableHTTPClientTransport(endpoint, { authProvider: provider, ...opts });
}

function newClient() {
    return new Client({ name: 'mcpauthz-e2e-ts', version: '0.0.1' }, { capabilities: {} });
}

const ops = {
    // reset starts over as a new client application: a new provider (no
    // registration, no tokens) and no session.
    async reset({ firstScope }) {
        if (client) await client.close().catch(() => {});
        client = undefined;
        transport = undefined;
        provider = new Provider({ firstScope });
        return {};
    },

    // connect runs the SDK's handshake; on UnauthorizedError (the SDK sent
    // the user to sign in) it finishes the sign-in and connects again with
    // a new transport, as the SDK's OAuth client example does.
    async connect() {
        const surfaced = [];
        client = newClient();
        transport = newTransport();
        try {
            await client.connect(transport);
        } catch (e) {
            surfaced.push(describe(e));
            if (!(e instanceof UnauthorizedError)) throw e;
            const code = await takeCode(provider);
            await transport.finishAuth(code);
            client = newClient();
            transport = newTransport();
            await client.connect(transport);
        }
        return {
            surfaced,
            sessionId: transport.sessionId ?? null,
            protocolVersion: transport.protocolVersion ?? null,
            server: client.getServerVersion()?.name ?? null
        };
    },

    async listTools() {
        const res = await client.listTools();
        return { tools: res.tools.map(t => t.name), sessionId: transport.sessionId ?? null };
    },

    // callTool calls a tool. When the SDK answers an insufficient_scope
    // 403 by starting a new authorization (UnauthorizedError), the
    // application finishes it and retries the call on the same transport
    // (session) once.
    async callTool({ name, args }) {
        const surfaced = [];
        const before = transport.sessionId ?? null;
        let res;
        try {
            res = await client.callTool({ name, arguments: args });
        } catch (e) {
            surfaced.push(describe(e));
            if (!(e instanceof UnauthorizedError)) {
                return { ok: false, surfaced, sessionBefore: before, sessionAfter: transport.sessionId ?? null };
            }
            const code = await takeCode(provider);
            await transport.finishAuth(code);
            try {
                res = await client.callTool({ name, arguments: args });
            } catch (e2) {
                surfaced.push(describe(e2));
                return { ok: false, surfaced, sessionBefore: before, sessionAfter: transport.sessionId ?? null };
            }
        }
        return {
            ok: true,
            surfaced,
            isError: res.isError ?? false,
            structured: res.structuredContent ?? null,
            sessionBefore: before,
            sessionAfter: transport.sessionId ?? null
        };
    },

    // reauthorize is the application's way around the SDK when it refreshed
    // instead of re-authorizing on insufficient_scope: drop the tokens (the
    // registration stays), run the SDK's auth() with the challenged scope,
    // finish the sign-in on the current transport (session).
    async reauthorize({ scope }) {
        provider.invalidateCredentials('tokens');
        const r = await auth(provider, { serverUrl: endpoint, scope });
        if (r !== 'REDIRECT') throw new Error(`auth() returned ${r}, want REDIRECT`);
        const code = await takeCode(provider);
        await transport.finishAuth(code);
        return { sessionId: transport.sessionId ?? null };
    },

    // callWithHeaders calls a tool on the current session through a second
    // transport whose requestInit headers override the SDK's own (an
    // intermediary rewriting MCP-Protocol-Version, Mcp-Method, ...), so the
    // test sees what the SDK surfaces for answers it never provokes itself.
    async callWithHeaders({ name, args, headers }) {
        const c = newClient();
        const t = newTransport({ sessionId: transport.sessionId, requestInit: { headers } });
        await c.connect(t); // a transport with a session id skips initialize
        try {
            const res = await c.callTool({ name, arguments: args });
            return { ok: true, isError: res.isError ?? false };
        } catch (e) {
            return { ok: false, surfaced: [describe(e)] };
        } finally {
            await t.close();
        }
    },

    // tokens returns what the provider holds, for the Go side to decode
    // (scopes, exp). The Go test never logs it.
    async tokens() {
        const t = provider.tokens();
        return t ? { access_token: t.access_token, refresh_token: t.refresh_token ?? '', scope: t.scope ?? '' } : {};
    },

    async session() {
        return { sessionId: transport?.sessionId ?? null };
    },

    // close ends the session (DELETE) and the client.
    async close() {
        if (transport?.sessionId) await transport.terminateSession().catch(() => {});
        if (client) await client.close();
        client = undefined;
        transport = undefined;
        return {};
    }
};

// Commands run one at a time; callbacks are taken as they arrive, even
// while a command waits for one.
const queue = [];
let running = false;

async function drain() {
    if (running) return;
    running = true;
    while (queue.length > 0) {
        const cmd = queue.shift();
        try {
            const fn = ops[cmd.op];
            if (!fn) throw new Error(`unknown op ${cmd.op}`);
            emit({ reply: cmd.id, ok: true, result: await fn(cmd) });
        } catch (e) {
            emit({ reply: cmd.id, ok: false, error: describe(e) });
        }
    }
    running = false;
}

const rl = createInterface({ input: process.stdin });
rl.on('line', line => {
    if (!line.trim()) return;
    const cmd = JSON.parse(line);
    if (cmd.op === 'callback') {
        if (callbackWaiter) {
            const w = callbackWaiter;
            callbackWaiter = null;
            w(cmd.url);
        } else {
            callbacks.push(cmd.url);
        }
        return;
    }
    queue.push(cmd);
    drain();
});
rl.on('close', async () => {
    if (client) await client.close().catch(() => {});
    process.exit(0);
});
