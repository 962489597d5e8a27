// The audit trail: kill records (GET .../kill-records) and the chain status (GET .../kill-records/verify).
import { call, projectPath } from '../api.js';
import { h, select, table } from '../dom.js';
import { cut, time } from '../format.js';

const PAGE = 20;
const OUTCOMES = ['', 'killed', 'still_running', 'failed', 'unknown', 'refused', 'pending'];

export function render(ctx) {
  const st = { offset: 0, node: ctx.query.get('node') || '', outcome: '' };
  const chain = h('div', { id: 'chain' }, h('p', { class: 'muted' }, 'Verifying the chain…'));
  const filters = h('form', { class: 'filters' },
    h('label', {}, 'Node id', h('input', { name: 'node', size: 38, value: st.node })),
    h('label', {}, 'Outcome', select('outcome', OUTCOMES.map((o) => [o, o || 'any']), '')),
    h('button', { type: 'submit' }, 'Apply'),
  );
  const body = h('tbody', { id: 'record-rows' });
  const pager = h('div', { class: 'pager' });
  ctx.root.append(
    h('h1', {}, 'Audit trail'),
    h('section', {}, h('h2', {}, 'Kill chain'), chain,
      h('button', { type: 'button', on: { click: () => verify() } }, 'Verify again')),
    h('section', {}, h('h2', {}, 'Kill records'), filters, pager,
      table(['When', 'Record', 'Who', 'From', 'Node', 'Sessions', 'Outcome', 'Detail', 'Seq'], body, { id: 'records' })),
  );
  filters.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = new FormData(filters);
    st.node = String(f.get('node') || '').trim();
    st.outcome = String(f.get('outcome') || '');
    st.offset = 0;
    load();
  });

  async function verify() {
    try {
      const { data } = await call('GET', projectPath() + '/kill-records/verify');
      const summary = `${data.entries} entries, head seq ${data.head_seq}` + (data.base_seq ? `, pruned up to seq ${data.base_seq}` : '');
      if (data.ok) {
        chain.replaceChildren(h('p', {}, h('span', { class: 'status-ok', id: 'chain-status' }, 'Intact'), ' — ', summary));
      } else {
        const tb = h('tbody');
        for (const p of data.problems || []) tb.append(h('tr', {}, h('td', { class: 'op' }, JSON.stringify(p))));
        chain.replaceChildren(
          h('p', {}, h('span', { class: 'status-bad', id: 'chain-status' }, 'BROKEN'), ' — ', summary),
          table(['Problem'], tb),
        );
      }
    } catch (e) {
      chain.replaceChildren(h('p', { class: 'status-bad' }, 'Not verified.'));
      ctx.showError(e);
    }
  }

  async function load() {
    try {
      const { data } = await call('GET', projectPath() + '/kill-records', {
        query: { node_id: st.node, outcome: st.outcome, offset: st.offset, limit: PAGE },
      });
      const records = data.records || [];
      const frag = document.createDocumentFragment();
      for (const r of records) {
        const what = r.selector
          ? 'filter ' + JSON.stringify(r.selector, (k, v) => (v === null ? undefined : v))
          : (r.session_ids || []).join(', ');
        frag.append(h('tr', { 'data-record': r.id },
          h('td', { class: 'num' }, time(r.at)),
          h('td', {}, h('code', {}, r.id)),
          h('td', {}, r.principal + (r.access_key ? ' (AK ' + r.access_key + ')' : '')),
          h('td', {}, r.source),
          h('td', {}, h('code', { title: r.node_id }, cut(r.node_id, 14))),
          h('td', { class: 'op' }, cut(what, 200)),
          h('td', { class: r.outcome === 'killed' ? 'status-ok' : r.outcome === 'pending' ? '' : 'status-bad' }, r.outcome),
          h('td', { class: 'op', title: JSON.stringify(r.detail) }, cut(JSON.stringify(r.detail), 160)),
          h('td', { class: 'num' }, String(r.seq) + (r.outcome_seq ? ' / ' + r.outcome_seq : '')),
        ));
      }
      if (records.length === 0) frag.append(h('tr', {}, h('td', { colspan: 9, class: 'muted' }, 'No kill record.')));
      body.replaceChildren(frag);
      const total = Number(data.total_count || 0);
      pager.replaceChildren(
        h('button', { type: 'button', disabled: st.offset === 0, on: { click: () => { st.offset = Math.max(0, st.offset - PAGE); load(); } } }, 'Previous'),
        h('span', {}, `${records.length ? st.offset + 1 : 0}–${st.offset + records.length} of ${total}`),
        h('button', { type: 'button', disabled: st.offset + records.length >= total, on: { click: () => { st.offset += PAGE; load(); } } }, 'Next'),
      );
    } catch (e) {
      ctx.showError(e);
    }
  }

  verify();
  load();
}
