// Instances of the project, their nodes and status (GET /v3/{project_id}/instances).
import { call, projectPath } from '../api.js';
import { h, table } from '../dom.js';

const PAGE = 20;

function statusClass(s) {
  const v = String(s || '').toLowerCase();
  return v === 'normal' || v === 'active' || v === 'ok' ? 'status-ok' : 'status-bad';
}

export function render(ctx) {
  let offset = Number(ctx.query.get('offset') || 0);
  const list = h('div', { id: 'instances' }, h('p', { class: 'muted' }, 'Loading…'));
  const pager = h('div', { class: 'pager' });
  ctx.root.append(h('h1', {}, 'Instances'), list, pager);

  async function load() {
    try {
      const { data } = await call('GET', projectPath() + '/instances', { query: { offset, limit: PAGE } });
      const items = data.instances || [];
      list.replaceChildren(...(items.length ? items.map(instance) : [h('p', {}, 'No instance is registered.')]));
      const total = Number(data.total_count || 0);
      pager.replaceChildren(
        h('button', { type: 'button', disabled: offset === 0, on: { click: () => { offset = Math.max(0, offset - PAGE); load(); } } }, 'Previous'),
        h('span', {}, total ? `${offset + 1}–${offset + items.length} of ${total}` : '0 instances'),
        h('button', { type: 'button', disabled: offset + items.length >= total, on: { click: () => { offset += PAGE; load(); } } }, 'Next'),
      );
    } catch (e) {
      list.replaceChildren();
      ctx.showError(e);
    }
  }

  // host:port of a node: its own port (docplane's extension) or the instance's; IPv6 bracketed.
  function address(n, inst) {
    const host = n.private_ip || n.public_ip || '';
    const port = n.port || inst.port || '';
    if (!host || !port) return host;
    return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  }

  function instance(inst) {
    const body = h('tbody');
    for (const g of inst.groups || []) {
      for (const n of g.nodes || []) {
        body.append(
          h('tr', { 'data-node': n.id },
            h('td', {}, h('code', {}, n.id)),
            h('td', {}, n.name),
            h('td', {}, g.type),
            h('td', {}, n.role),
            h('td', { class: statusClass(n.status) }, n.status),
            h('td', {}, address(n, inst)),
            h('td', {},
              h('a', { href: `#/nodes/${encodeURIComponent(n.id)}/sessions?instance=${encodeURIComponent(inst.id)}`, class: 'sessions-link' }, 'Sessions'),
              ' · ',
              h('a', { href: `#/instances/${encodeURIComponent(inst.id)}/connections?node=${encodeURIComponent(n.id)}` }, 'Connections'),
            ),
          ),
        );
      }
    }
    const version = inst.datastore ? `${inst.datastore.type} ${inst.datastore.version}` : '';
    return h('section', { class: 'instance', 'data-instance': inst.id },
      h('h2', {}, inst.name, ' ', h('span', { class: statusClass(inst.status) }, inst.status)),
      h('div', { class: 'kv' },
        h('span', { class: 'muted' }, 'id'), h('code', {}, inst.id),
        h('span', { class: 'muted' }, 'mode'), h('span', {}, inst.mode),
        h('span', { class: 'muted' }, 'version'), h('span', {}, version),
        h('span', { class: 'muted' }, 'port'), h('span', {}, inst.port),
      ),
      h('p', {},
        h('a', { href: `#/instances/${encodeURIComponent(inst.id)}/rules` }, 'Kill-op rules'), ' · ',
        h('a', { href: `#/instances/${encodeURIComponent(inst.id)}/connections` }, 'Connection statistics'),
      ),
      table(['Node', 'Name', 'Group', 'Role', 'Status', 'Address', ''], body, { class: 'nodes' }),
    );
  }

  load();
}
