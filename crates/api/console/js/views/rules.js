// Kill-op rules of an instance (/v3/{project_id}/instances/{instance_id}/kill-op-rule):
// list, create (a new rule starts disabled), enable/disable.
import { call, projectPath } from '../api.js';
import { h, select, table } from '../dom.js';
import { list } from '../format.js';

const OP_TYPES = ['insert', 'update', 'query', 'command', 'remove', 'getmore'];
const PLANS = ['', 'COLLSCAN', 'SORT_KEY_GENERATOR', 'SKIP', 'LIMIT', 'GEO_NEAR_2DSPHERE', 'GEO_NEAR_2D', 'AGGREGATE', 'OR'];
const NODE_TYPES = ['replica', 'mongos', 'shard', 'mongos_shard'];

const words = (s) => String(s || '').split(/[\s,]+/).filter(Boolean);

function integer(name, text, lo, hi) {
  const t = String(text).trim();
  const n = Number(t);
  if (t === '' || !Number.isInteger(n) || (n !== 0 && (n < lo || n > hi))) {
    throw new Error(`${name} must be 0 (no limit) or an integer in [${lo}, ${hi}], got "${t}"`);
  }
  return n;
}

export function render(ctx) {
  const instance = ctx.params[0];
  const base = projectPath() + '/instances/' + encodeURIComponent(instance) + '/kill-op-rule';
  const body = h('tbody', { id: 'rule-rows' });
  const form = h('form', { class: 'filters', id: 'new-rule' },
    h('fieldset', {}, h('legend', {}, 'Operation types'),
      OP_TYPES.map((t) => h('label', { class: 'inline' }, h('input', { type: 'checkbox', name: 'operation_types', value: t }), t))),
    h('label', {}, 'Namespace (db or db.coll; empty = any)', h('input', { name: 'namespaces', size: 16 })),
    h('label', {}, 'Client IPs (up to 5; empty = any)', h('input', { name: 'client_ips', size: 20 })),
    h('label', {}, 'Plan summary', select('plan_summary', PLANS.map((p) => [p, p || 'any']), '')),
    h('label', {}, 'Max concurrency (0 = none)', h('input', { name: 'max_concurrency', size: 6, value: '0' })),
    h('label', {}, 'Seconds running (0 = none)', h('input', { name: 'secs_running', size: 6, value: '0' })),
    h('label', {}, 'Node type', select('node_type', NODE_TYPES.map((t) => [t, t]), 'replica')),
    h('label', {}, 'Mode (docplane extension)', select('mode', [['kill', 'kill'], ['observe', 'observe: record only']], 'kill')),
    h('button', { type: 'submit', class: 'primary' }, 'Create rule'),
  );
  ctx.root.append(
    h('h1', {}, 'Kill-op rules of instance ', h('code', {}, instance)),
    h('p', {}, h('a', { href: '#/instances' }, '← Instances')),
    table(['Id', 'Status', 'Operation types', 'Namespaces', 'Client IPs', 'Plan', 'Max concurrency', 'Secs running', 'Node type', ''], body, { id: 'rules' }),
    h('h2', {}, 'New rule (created disabled)'),
    form,
  );

  // One listener for every row's enable/disable button.
  body.addEventListener('click', async (ev) => {
    const b = ev.target;
    if (!(b instanceof HTMLButtonElement) || !b.dataset.action) return;
    try {
      await call('PUT', base, { body: { ids: [b.dataset.id], action: b.dataset.action } });
      ctx.notice(`Rule ${b.dataset.id}: ${b.dataset.action}d.`);
    } catch (e) {
      ctx.showError(e);
    }
    load();
  });

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = new FormData(form);
    let rule;
    try {
      const ops = f.getAll('operation_types').map(String);
      if (ops.length === 0) throw new Error('Choose at least one operation type.');
      const max = integer('max_concurrency', f.get('max_concurrency'), 1, 100000);
      const secs = integer('secs_running', f.get('secs_running'), 2, 86400);
      if (max === 0 && secs === 0) throw new Error('max_concurrency and secs_running cannot both be 0.');
      rule = {
        operation_types: ops,
        namespaces: words(f.get('namespaces')),
        client_ips: words(f.get('client_ips')),
        plan_summary: String(f.get('plan_summary') || ''),
        max_concurrency: max,
        secs_running: secs,
        node_type: String(f.get('node_type')),
      };
      // The vendor's body has no mode; send it only when it is not the default.
      if (f.get('mode') === 'observe') rule.mode = 'observe';
    } catch (e) {
      ctx.showError(e);
      return;
    }
    try {
      await call('POST', base, { body: rule });
      ctx.notice('Rule created (disabled until enabled).');
      form.reset();
    } catch (e) {
      ctx.showError(e);
    }
    load();
  });

  async function load() {
    try {
      const { data } = await call('GET', base, { query: { offset: 0, limit: 100 } });
      const rules = data.rules || [];
      const frag = document.createDocumentFragment();
      for (const r of rules) {
        const enabled = String(r.status).toUpperCase() === 'ENABLED';
        frag.append(h('tr', { 'data-rule': r.id },
          h('td', {}, h('code', {}, r.id)),
          h('td', { class: enabled ? 'status-ok' : 'muted' }, r.status),
          h('td', {}, list(r.operation_types)),
          h('td', {}, list(r.namespaces) || 'any'),
          h('td', {}, list(r.client_ips) || 'any'),
          h('td', {}, r.plan_summary || 'any'),
          h('td', { class: 'num' }, String(r.max_concurrency)),
          h('td', { class: 'num' }, String(r.secs_running)),
          h('td', {}, r.node_type + (r.mode && r.mode !== 'kill' ? ' (' + r.mode + ')' : '')),
          h('td', {}, h('button', { type: 'button', 'data-id': r.id, 'data-action': enabled ? 'disable' : 'enable' }, enabled ? 'Disable' : 'Enable')),
        ));
      }
      if (rules.length === 0) frag.append(h('tr', {}, h('td', { colspan: 10, class: 'muted' }, 'No rule.')));
      body.replaceChildren(frag);
    } catch (e) {
      body.replaceChildren();
      ctx.showError(e);
    }
  }

  load();
}
