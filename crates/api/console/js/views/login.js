// Sign in with an account (domain), user, password and project; the token goes to sessionStorage.
import { signIn, clearSession } from '../api.js';
import { h } from '../dom.js';

export function render(ctx) {
  clearSession();
  const field = (label, name, attrs = {}) =>
    h('label', {}, label, h('input', { name, required: true, autocomplete: 'off', ...attrs }));
  const button = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h(
    'form',
    { id: 'login-form', method: 'post' },
    field('Account (domain)', 'domain', { value: 'docplane' }),
    field('User', 'user', { autocomplete: 'username' }),
    field('Password', 'password', { type: 'password', autocomplete: 'current-password' }),
    field('Project (name or id)', 'project'),
    button,
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = new FormData(form);
    button.disabled = true;
    try {
      await signIn({
        domain: f.get('domain').trim(),
        user: f.get('user').trim(),
        password: f.get('password'),
        project: f.get('project').trim(),
      });
      ctx.go('#/instances');
    } catch (e) {
      ctx.showError(e);
      button.disabled = false;
    }
  });
  ctx.root.append(
    h('h1', {}, 'Sign in'),
    h('div', { class: 'card' }, form),
    h('p', { class: 'muted' }, 'The token is kept in this tab only (sessionStorage) and sent as X-Auth-Token.'),
  );
}
