/* api.js - the session (token, who is signed in) and every JSON request.
 *
 * The token lives in sessionStorage and goes only into Authorization
 * headers, never into a URL. Errors become ApiError, whose message is a
 * plain sentence for people (plainError): the server's problem+json
 * detail is kept in .detail for the cases where it says more.
 */

export const session = {
  token: sessionStorage.getItem('dripd.token') || '',
  me: null, /* {user, admin} from GET /v1/me */
};

export function authHeaders(extra) {
  return Object.assign({ Authorization: 'Bearer ' + session.token }, extra || {});
}

export class ApiError extends Error {
  constructor(status, detail, context) {
    super(plainError(status, detail, context));
    this.status = status;
    this.detail = detail || '';
  }
}

/* A sentence for a failed request. status 0 means no answer at all. The
 * context ({name, folder, user}) names what the sentence talks about. */
export function plainError(status, detail, context) {
  const c = context || {};
  const name = c.name ? '“' + c.name + '”' : 'this file';
  detail = detail || '';
  switch (true) {
    case status === 0:
      return 'The server cannot be reached. Check the connection, then try again.';
    case status === 400 && /unknown user/.test(detail):
      return 'There is no user named “' + (c.user || detail.replace(/.*unknown user "?|"$/g, '')) + '”.';
    case status === 400:
      return 'The server refused the request: ' + (detail || 'it is not valid') + '.';
    case status === 401:
      return 'Your token was refused. Sign in again.';
    case status === 403:
      return 'You are not allowed to do that.';
    case status === 404:
      return 'That file is no longer there (it was moved or deleted).';
    case status === 409 && /exists/.test(detail):
      return 'A file named ' + name + ' already exists' + (c.folder ? ' in ' + c.folder : '') + '.';
    case status === 409 && /is a folder/.test(detail):
      return 'There is a folder named ' + name + (c.folder ? ' in ' + c.folder : '') +
        '; a file cannot have the same name.';
    case status === 409 && /inside a path that is a file/.test(detail):
      return 'That place is inside a file, not a folder; choose another folder.';
    case status === 409 && /not available/.test(detail):
      return name[0].toUpperCase() + name.slice(1) + ' is still being processed. Try again in a moment.';
    case status === 409:
      return 'That path is taken' + (detail ? ': ' + detail : '') + '.';
    case status === 413:
      return name[0].toUpperCase() + name.slice(1) + ' is larger than this server accepts' +
        (/limit of (\d+)/.test(detail) ? ' (' + fmtLimit(detail) + ')' : '') + '.';
    case status === 503:
      return 'The server is busy. Try again in a little while.';
    case status === 507:
      return 'The server has run out of disk space.';
    case status >= 500:
      return 'The server ran into a problem (HTTP ' + status + '). Try again later.';
    default:
      return 'The request failed (HTTP ' + status + (detail ? ': ' + detail : '') + ').';
  }
}

function fmtLimit(detail) {
  const n = Number(/limit of (\d+)/.exec(detail)[1]);
  const u = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n, i = 0;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return 'the limit is ' + (i ? v.toFixed(v < 10 ? 1 : 0) : v) + ' ' + u[i];
}

/* The problem+json detail of a response body text, or ''. */
export function problemDetail(text) {
  try {
    const d = JSON.parse(text);
    return (d && (d.detail || d.title)) || '';
  } catch (e) {
    return '';
  }
}

let refused = null;
/* fn() runs whenever the server refuses the token (401) mid-session. */
export function onRefused(fn) { refused = fn; }
export function tokenRefused() { if (refused) refused(); }

/* JSON request; resolves to the parsed body (null when empty), rejects
 * with ApiError. A 401 also calls the onRefused() handler, except while
 * signing in. */
export async function api(method, path, body, context) {
  const opts = { method, headers: authHeaders({ Accept: 'application/json' }) };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, opts);
  } catch (e) {
    throw new ApiError(0, String(e), context);
  }
  const text = await r.text().catch(() => '');
  if (r.status === 401 && !(context && context.signingIn)) tokenRefused();
  if (!r.ok) throw new ApiError(r.status, problemDetail(text), context);
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch (e) {
    return null;
  }
}

/* Check a token and learn who it belongs to. */
export async function signIn(token) {
  const before = session.token;
  session.token = token;
  try {
    session.me = await api('GET', '/v1/me', undefined, { signingIn: true });
  } catch (e) {
    session.token = before;
    throw e;
  }
  sessionStorage.setItem('dripd.token', token);
  return session.me;
}

export function forget() {
  sessionStorage.removeItem('dripd.token');
  session.token = '';
  session.me = null;
}
