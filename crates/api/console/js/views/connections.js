// Connection statistics of an instance's node (GET .../instances/{id}/conn-statistics?node_id=).
import { call, projectPath } from '../api.js';
import { h, select, table } from '../dom.js';

export function render(ctx) {
  const instance = ctx.params[0];
  let node = ctx.query.get('node') || '';
  const picker = h('span');
  const out = h('div', { id: 'conn-stats' });
  ctx.root.append(
    h('h1', {}, 'Connections of instance ', h('code', {}, instance)),
    h('p', {}, h('a', { href: '#/instances' }, '← Instances')),
    h('div', { class: 'toolbar' }, picker, h('button', { type: 'button', on: { click: () => load() } }, 'Refresh')),
    out,
  );

  function clients(title, rows, id) {
    const tb = h('tbody');
    for (const r of rows || []) tb.append(h('tr', {}, h('td', {}, r.client_ip), h('td', { class: 'num' }, String(r.count))));
    if (!rows || rows.length === 0) tb.append(h('tr', {}, h('td', { colspan: 2, class: 'muted' }, 'None.')));
    return h('section', {}, h('h2', {}, title), table(['Client address', 'Connections'], tb, { id }));
  }

  async function nodes() {
    try {
      const { data } = await call('GET', projectPath() + '/instances', { query: { id: instance, limit: 1 } });
      const inst = (data.instances || [])[0];
      const ids = inst ? inst.groups.flatMap((g) => g.nodes.map((n) => n.id)) : [];
      if (!node && ids.length) node = ids[0];
      const sel = select('node', ids.map((i) => [i, i]), node);
      sel.addEventListener('change', () => {
        node = sel.value;
        load();
      });
      picker.replaceChildren(h('label', {}, 'Node', sel));
    } catch (e) {
      ctx.showError(e);
    }
  }

  async function load() {
    try {
      const { data } = await call('GET', projectPath() + '/instances/' + encodeURIComponent(instance) + '/conn-statistics', {
        query: { node_id: node },
      });
      out.replaceChildren(
        h('div', { class: 'kv' },
          h('span', { class: 'muted' }, 'Total'), h('span', { id: 'conn-total' }, String(data.total_connections)),
          h('span', { class: 'muted' }, 'Clients (outer)'), h('span', {}, String(data.total_outer_connections)),
          h('span', { class: 'muted' }, 'Internal (inner)'), h('span', {}, String(data.total_inner_connections)),
        ),
        clients('Client connections', data.outer_connections, 'outer'),
        clients('Internal connections (docplane and the node itself)', data.inner_connections, 'inner'),
      );
    } catch (e) {
      out.replaceChildren();
      ctx.showError(e);
    }
  }

  nodes().then(load);
}
