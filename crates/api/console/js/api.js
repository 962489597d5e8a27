// The console's one door to docplane: the public JSON API, with the token from sessionStorage.
// Nothing here knows about pages; every failure is an ApiError carrying the vendor code, the
// message and the response's X-Request-Id.

const KEY = 'docplane.console.session';

export class ApiError extends Error {
  constructor(status, code, message, requestId) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }
}

export function session() {
  try {
    const s = JSON.parse(sessionStorage.getItem(KEY) || 'null');
    return s && typeof s.token === 'string' && typeof s.project_id === 'string' ? s : null;
  } catch {
    return null;
  }
}

export function clearSession() {
  sessionStorage.removeItem(KEY);
}

/// A request id of our own, sent as X-Request-Id, so a kill can be found in the audit trail.
export function newRequestId() {
  return 'console-' + crypto.randomUUID().replaceAll('-', '');
}

/// `/v3/{project_id}` of the signed-in project.
export function projectPath() {
  const s = session();
  if (!s) throw new ApiError(401, 'console', 'Not signed in.', null);
  return '/v3/' + encodeURIComponent(s.project_id);
}

function queryString(query) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? '?' + s : '';
}

/// One API call. Resolves to {data, requestId, headers}; rejects with ApiError.
export async function call(method, path, { query, body, requestId, auth = true } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (requestId) headers['X-Request-Id'] = requestId;
  if (auth) {
    const s = session();
    if (!s) throw new ApiError(401, 'console', 'Not signed in.', null);
    headers['X-Auth-Token'] = s.token;
  }
  let resp;
  try {
    resp = await fetch(path + queryString(query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch (e) {
    throw new ApiError(0, 'network', 'The docplane endpoint cannot be reached (' + e.message + ').', null);
  }
  const rid = resp.headers.get('x-request-id');
  const text = await resp.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!resp.ok) {
    const code = data && data.error_code ? data.error_code : 'HTTP ' + resp.status;
    const msg = data && data.error_msg ? data.error_msg : text.slice(0, 300) || resp.statusText;
    throw new ApiError(resp.status, code, msg, rid);
  }
  return { data, requestId: rid, headers: resp.headers };
}

/// Password sign-in (POST /v3/auth/tokens); the project is a 32-hex id or a name.
export async function signIn({ domain, user, password, project }) {
  const scope = /^[0-9a-f]{32}$/.test(project) ? { project: { id: project } } : { project: { name: project } };
  const body = {
    auth: {
      identity: { methods: ['password'], password: { user: { name: user, password, domain: { name: domain } } } },
      scope,
    },
  };
  const r = await call('POST', '/v3/auth/tokens', { body, auth: false });
  const token = r.headers.get('x-subject-token');
  const t = r.data && r.data.token;
  if (!token || !t || !t.project || !t.project.id) {
    throw new ApiError(500, 'console', 'The sign-in answer has no project-scoped token.', r.requestId);
  }
  const s = {
    token,
    project_id: t.project.id,
    project_name: t.project.name || project,
    user: (t.user && t.user.name) || user,
    domain,
    expires_at: t.expires_at || '',
  };
  sessionStorage.setItem(KEY, JSON.stringify(s));
  return s;
}
