// The console's shell: hash routes, the one error banner, notices, the confirmation dialog.
import { ApiError, clearSession, session } from './api.js';
import { h } from './dom.js';
import * as login from './views/login.js';
import * as instances from './views/instances.js';
import * as sessions from './views/sessions.js';
import * as audit from './views/audit.js';
import * as rules from './views/rules.js';
import * as connections from './views/connections.js';

const $ = (id) => document.getElementById(id);

// Route patterns -> views. Each view's render(ctx) may return a cleanup function.
const ROUTES = [
  [/^\/login$/, login, 'login'],
  [/^\/instances$/, instances, 'instances'],
  [/^\/nodes\/([^/]+)\/sessions$/, sessions, 'instances'],
  [/^\/audit$/, audit, 'audit'],
  [/^\/instances\/([^/]+)\/rules$/, rules, 'instances'],
  [/^\/instances\/([^/]+)\/connections$/, connections, 'instances'],
];

let cleanup = null;

/// Shows one error (vendor code, message, request id), replacing any earlier one.
export function showError(err) {
  const box = $('error');
  if (!err) {
    box.hidden = true;
    box.replaceChildren();
    return;
  }
  const e = err instanceof ApiError ? err : new ApiError(0, 'console', err.message || String(err), null);
  const parts = [h('code', { class: 'code' }, e.code), ': ', h('span', { class: 'msg' }, e.message)];
  if (e.requestId) parts.push(' (request id ', h('code', { class: 'rid' }, e.requestId), ')');
  box.replaceChildren(...parts);
  box.hidden = false;
  if (e.status === 401 && e.code !== 'console' && session()) {
    // The token expired or was revoked: back to the sign-in page, keeping the message.
    clearSession();
    go('#/login', true);
  }
}

export function notice(...content) {
  const box = $('notice');
  if (content.length === 0) {
    box.hidden = true;
    box.replaceChildren();
  } else {
    box.replaceChildren(...content);
    box.hidden = false;
  }
}

/// Opens the confirmation dialog; resolves to true when the user confirms.
export function confirm(title, body, okLabel = 'Confirm') {
  const dlg = $('confirm');
  $('confirm-title').textContent = title;
  $('confirm-body').replaceChildren(body);
  $('confirm-ok').textContent = okLabel;
  dlg.returnValue = '';
  return new Promise((resolve) => {
    dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true });
    dlg.showModal();
  });
}

export function dialogOpen() {
  return $('confirm').open;
}

function go(hash, keepError = false) {
  if (location.hash === hash) render(keepError);
  else {
    keepErrorOnce = keepError;
    location.hash = hash;
  }
}

let keepErrorOnce = false;

function render(keepError = false) {
  if (cleanup) {
    try {
      cleanup();
    } catch {
      // A view's cleanup failing must not stop navigation.
    }
    cleanup = null;
  }
  if (!keepError && !keepErrorOnce) showError(null);
  keepErrorOnce = false;
  notice();
  const s = session();
  const path = (location.hash.replace(/^#/, '').split('?')[0]) || '/instances';
  const query = new URLSearchParams(location.hash.split('?')[1] || '');
  $('nav').hidden = !s;
  $('signout').hidden = !s;
  $('who').textContent = s ? s.user + ' @ ' + s.domain + ' / ' + s.project_name : '';
  if (!s && path !== '/login') {
    go('#/login', true);
    return;
  }
  const route = ROUTES.find(([re]) => re.test(path));
  const root = $('view');
  root.replaceChildren();
  if (!route) {
    root.append(h('h1', {}, 'Not found'), h('p', {}, 'No console page at ', h('code', {}, path), '.'));
    return;
  }
  const [re, view, nav] = route;
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('current', a.dataset.nav === nav);
  const params = re.exec(path).slice(1).map(decodeURIComponent);
  const ctx = { root, params, query, go, showError, notice, confirm, dialogOpen };
  try {
    cleanup = view.render(ctx) || null;
  } catch (e) {
    showError(e);
  }
}

$('signout').addEventListener('click', () => {
  clearSession();
  go('#/login');
});
window.addEventListener('hashchange', () => render());
render();
