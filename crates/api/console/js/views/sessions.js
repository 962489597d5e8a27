// Live sessions of one node: GET .../nodes/{node_id}/sessions with the API's filters, sorted by
// running time, paged (at most 100 rows rendered), refreshed every 5 s unless paused; kills by
// selected ids (POST .../session) or by filter (POST .../sessions/kill, dry run first), each
// after a confirmation that shows exactly what will be killed.
import { call, newRequestId, projectPath } from '../api.js';
import { h, select, table } from '../dom.js';
import { cut, duration, parseDuration } from '../format.js';

const REFRESH_MS = 5000;
const TYPES = ['', 'command', 'query', 'update', 'insert', 'remove', 'getmore', 'killcursors', 'none'];
const PLANS = ['', 'COLLSCAN', 'IXSCAN', 'FETCH', 'SORT', 'LIMIT', 'SKIP', 'COUNT', 'COUNT_SCAN', 'TEXT', 'PROJECTION'];
const SIZES = ['20', '50', '100'];

export function render(ctx) {
  const node = ctx.params[0];
  const base = projectPath() + '/nodes/' + encodeURIComponent(node);
  const st = {
    offset: 0,
    limit: 50,
    desc: true,
    paused: false,
    filter: {},
    total: null,
    rows: [],
    selected: new Map(), // id -> row as last listed
    inFlight: false,
  };

  // ---- controls (built once; listeners on the controls and on the table body only)
  const filters = h('form', { class: 'filters', id: 'filters' },
    h('label', {}, 'Type', select('type', TYPES.map((t) => [t, t || 'any']), '')),
    h('label', {}, 'Namespace (db.collection)', h('input', { name: 'namespace', size: 18 })),
    h('label', {}, 'Plan summary', select('plan_summary', PLANS.map((p) => [p, p || 'any']), '')),
    h('label', {}, 'Running longer than', h('input', { name: 'cost_time', size: 8, placeholder: '30s, 250ms' })),
    h('button', { type: 'submit' }, 'Apply'),
  );
  const extra = h('form', { class: 'filters', id: 'selector' },
    h('label', {}, 'Client address', h('input', { name: 'client', size: 16, placeholder: '10.0.0.5[:port]' })),
    h('label', {}, 'User', h('input', { name: 'user', size: 10 })),
    h('label', {}, 'Application name', h('input', { name: 'app_name', size: 14 })),
    h('button', { type: 'submit', class: 'danger', id: 'kill-matching' }, 'Kill matching…'),
  );
  const pause = h('input', { type: 'checkbox', id: 'pause' });
  const sortBtn = h('button', { type: 'button', id: 'sort' });
  const size = select('limit', SIZES.map((s) => [s, s + ' per page']), String(st.limit), { id: 'page-size' });
  const killSel = h('button', { type: 'button', class: 'danger', id: 'kill-selected', disabled: true }, 'Kill selected');
  const refreshed = h('span', { class: 'muted', id: 'refreshed' });
  const body = h('tbody', { id: 'session-rows' });
  const all = h('input', { type: 'checkbox', id: 'select-page', title: 'Select the active sessions of this page' });
  const pager = h('div', { class: 'pager' });
  const result = h('div', { id: 'kill-result' });

  ctx.root.append(
    h('h1', {}, 'Sessions of node ', h('code', {}, node)),
    h('p', {}, h('a', { href: '#/instances' }, '← Instances'), ' · ',
      h('a', { href: `#/audit?node=${encodeURIComponent(node)}` }, 'Kill records of this node')),
    filters,
    h('div', { class: 'toolbar' },
      h('label', { class: 'inline' }, pause, 'Pause auto-refresh'),
      h('button', { type: 'button', id: 'refresh', on: { click: () => load() } }, 'Refresh now'),
      sortBtn, size, killSel, refreshed),
    pager,
    table([all, 'Id', 'Running', 'Type', 'Namespace', 'Plan', 'Client', 'User', 'Connection', 'Operation'], body, { id: 'sessions' }),
    h('h2', {}, 'Kill by filter'),
    h('p', { class: 'muted' }, 'Matches the filters above plus these; a dry run shows what would be killed before anything is.'),
    extra,
    result,
  );

  function sortLabel() {
    sortBtn.textContent = 'Running time ' + (st.desc ? '↓ longest first' : '↑ shortest first');
  }
  sortLabel();

  filters.addEventListener('submit', (ev) => {
    ev.preventDefault();
    try {
      st.filter = readFilter();
    } catch (e) {
      ctx.showError(e);
      return;
    }
    st.offset = 0;
    st.total = null;
    load();
  });
  extra.addEventListener('submit', (ev) => {
    ev.preventDefault();
    killMatching();
  });
  pause.addEventListener('change', () => {
    st.paused = pause.checked;
  });
  sortBtn.addEventListener('click', () => {
    st.desc = !st.desc;
    st.offset = 0;
    sortLabel();
    load();
  });
  size.addEventListener('change', () => {
    st.limit = Number(size.value);
    st.offset = 0;
    load();
  });
  killSel.addEventListener('click', () => killSelected());
  all.addEventListener('change', () => {
    for (const r of st.rows) if (r.active) all.checked ? st.selected.set(r.id, r) : st.selected.delete(r.id);
    draw();
  });
  // One listener for every row's checkbox.
  body.addEventListener('change', (ev) => {
    const box = ev.target;
    if (!(box instanceof HTMLInputElement) || !box.dataset.id) return;
    const row = st.rows.find((r) => r.id === box.dataset.id);
    if (box.checked && row) st.selected.set(row.id, row);
    else st.selected.delete(box.dataset.id);
    updateKillButton();
  });

  function readFilter() {
    const f = new FormData(filters);
    const out = {};
    for (const k of ['type', 'namespace', 'plan_summary']) {
      const v = String(f.get(k) || '').trim();
      if (v) out[k] = v;
    }
    const us = parseDuration(f.get('cost_time') || '');
    if (us !== null) out.cost_time = us;
    return out;
  }

  // ---- listing
  async function fetchPage(offset, limit) {
    const { data } = await call('GET', base + '/sessions', { query: { ...st.filter, offset, limit } });
    return data;
  }

  async function load() {
    if (st.inFlight) return;
    st.inFlight = true;
    try {
      let rows;
      if (st.desc) {
        const data = await fetchPage(st.offset, st.limit);
        st.total = Number(data.total_count);
        rows = data.sessions || [];
      } else {
        // The API lists longest first: the shortest-first page k is the API's page counted from the end.
        if (st.total === null) st.total = Number((await fetchPage(0, 1)).total_count);
        const end = Math.max(0, st.total - st.offset);
        const start = Math.max(0, end - st.limit);
        const data = end === 0 ? { total_count: st.total, sessions: [] } : await fetchPage(start, end - start);
        st.total = Number(data.total_count);
        rows = (data.sessions || []).slice().reverse();
      }
      st.rows = rows;
      // Selected rows still listed get their fresh figures.
      for (const r of rows) if (st.selected.has(r.id)) st.selected.set(r.id, r);
      draw();
      refreshed.textContent = 'Updated ' + new Date().toLocaleTimeString();
    } catch (e) {
      ctx.showError(e);
    } finally {
      st.inFlight = false;
    }
  }

  function draw() {
    const frag = document.createDocumentFragment();
    for (const r of st.rows) {
      const box = r.active
        ? h('input', { type: 'checkbox', 'data-id': r.id, checked: st.selected.has(r.id), 'aria-label': 'select ' + r.id })
        : h('span', { class: 'muted', title: 'idle: nothing to kill' }, '–');
      frag.append(
        h('tr', { 'data-id': r.id },
          h('td', {}, box),
          h('td', {}, h('code', {}, r.id)),
          h('td', { class: 'num', title: r.cost_time + ' µs' }, duration(r.cost_time)),
          h('td', {}, r.type),
          h('td', {}, r.namespace),
          h('td', {}, r.plan_summary),
          h('td', {}, r.client),
          h('td', {}, r.user || ''),
          h('td', {}, r.description),
          h('td', { class: 'op', title: cut(r.operation, 2000) }, cut(r.operation, 240)),
        ),
      );
    }
    if (st.rows.length === 0) frag.append(h('tr', {}, h('td', { colspan: 10, class: 'muted' }, 'No session matches.')));
    body.replaceChildren(frag);
    const n = st.rows.length;
    const first = n ? st.offset + 1 : 0;
    pager.replaceChildren(
      h('button', { type: 'button', disabled: st.offset === 0, on: { click: () => page(-1) } }, 'Previous'),
      h('span', { id: 'page-info' }, `${first}–${st.offset + n} of ${st.total ?? '?'}`),
      h('button', { type: 'button', disabled: st.offset + n >= (st.total ?? 0), on: { click: () => page(1) } }, 'Next'),
    );
    all.checked = n > 0 && st.rows.filter((r) => r.active).every((r) => st.selected.has(r.id));
    updateKillButton();
  }

  function page(dir) {
    st.offset = Math.max(0, st.offset + dir * st.limit);
    load();
  }

  function updateKillButton() {
    killSel.disabled = st.selected.size === 0;
    killSel.textContent = st.selected.size ? `Kill selected (${st.selected.size})…` : 'Kill selected';
  }

  function targetsTable(rows, withOutcome) {
    const tb = h('tbody');
    for (const r of rows) {
      tb.append(h('tr', { 'data-id': r.id },
        h('td', {}, h('code', {}, r.id)),
        h('td', { class: 'num' }, duration(r.cost_time)),
        h('td', {}, r.type),
        h('td', {}, r.namespace),
        h('td', {}, r.client),
        h('td', { class: 'op' }, cut(r.operation, 300)),
        withOutcome ? h('td', { class: 'outcome' }, r.outcome + (r.reason ? ' (' + r.reason + ')' : '')) : null,
      ));
    }
    const heads = ['Id', 'Running', 'Type', 'Namespace', 'Client', 'Operation'];
    if (withOutcome) heads.push('Outcome');
    return table(heads, tb, { class: 'targets' });
  }

  // ---- kills
  async function findRecord(requestId) {
    const { data } = await call('GET', projectPath() + '/kill-records', { query: { node_id: node, limit: 20 } });
    return (data.records || []).find((r) => r.request_id === requestId) || null;
  }

  async function killSelected() {
    const rows = [...st.selected.values()];
    if (rows.length === 0) return;
    const ok = await ctx.confirm(
      `Kill ${rows.length} session${rows.length === 1 ? '' : 's'} on node ${node}?`,
      h('div', {}, h('p', {}, 'These operations, as last listed, will be killed:'), targetsTable(rows, false)),
      'Kill ' + rows.length,
    );
    if (!ok) return;
    const requestId = newRequestId();
    const ids = rows.map((r) => r.id);
    try {
      await call('POST', base + '/session', { body: { sessions: ids }, requestId });
      ctx.showError(null);
      st.selected.clear();
      const rec = await findRecord(requestId).catch(() => null);
      ctx.notice(
        `Killed ${ids.length} session${ids.length === 1 ? '' : 's'} (${ids.join(', ')}); gone from the node. Kill record `,
        h('code', { id: 'record-id' }, rec ? rec.id : 'not found'),
        rec ? `, outcome ${rec.outcome}.` : '.',
      );
    } catch (e) {
      ctx.showError(e);
      await showRecord(requestId);
    }
    load();
  }

  /// After a failed kill: its record (refusals and partial kills are recorded too), if any.
  async function showRecord(requestId) {
    const rec = await findRecord(requestId).catch(() => null);
    if (rec) ctx.notice('Kill record ', h('code', { id: 'record-id' }, rec.id), `, outcome ${rec.outcome}.`);
  }

  function selectorFilter() {
    const f = { ...st.filter };
    const x = new FormData(extra);
    for (const k of ['client', 'user', 'app_name']) {
      const v = String(x.get(k) || '').trim();
      if (v) f[k] = v;
    }
    return f;
  }

  async function killMatching() {
    result.replaceChildren();
    let filter;
    try {
      st.filter = readFilter();
      filter = selectorFilter();
    } catch (e) {
      ctx.showError(e);
      return;
    }
    if (Object.keys(filter).length === 0) {
      ctx.showError(new Error('A kill by filter needs at least one criterion.'));
      return;
    }
    let dry;
    try {
      dry = (await call('POST', base + '/sessions/kill', { body: { filter, max: 1000, dry_run: true } })).data;
    } catch (e) {
      ctx.showError(e);
      return;
    }
    const would = dry.sessions.filter((s) => s.outcome === 'would_kill');
    if (would.length === 0) {
      ctx.notice(`Nothing to kill: ${dry.matched} matched, ${dry.protected} protected.`);
      return;
    }
    const ok = await ctx.confirm(
      `Kill ${would.length} session${would.length === 1 ? '' : 's'} matching ${JSON.stringify(filter)}?`,
      h('div', {},
        h('p', {}, `Dry run: ${dry.matched} matched, ${would.length} would be killed, ${dry.protected} protected (never killed). `,
          `The kill is refused if more than ${would.length} match when it runs.`),
        targetsTable(dry.sessions, true)),
      'Kill ' + would.length,
    );
    if (!ok) return;
    const requestId = newRequestId();
    try {
      const body = { filter, max: would.length, dry_run: false };
      const r = (await call('POST', base + '/sessions/kill', { body, requestId })).data;
      ctx.showError(null);
      ctx.notice(
        `Killed ${r.killed} of ${r.matched} matched (${r.protected} protected). Kill record `,
        h('code', { id: 'record-id' }, r.record_id || 'none'), '.',
      );
      result.replaceChildren(h('h2', {}, 'Outcome'), targetsTable(r.sessions, true));
    } catch (e) {
      ctx.showError(e);
      await showRecord(requestId);
    }
    load();
  }

  load();
  const timer = setInterval(() => {
    if (!st.paused && !ctx.dialogOpen() && !document.hidden) load();
  }, REFRESH_MS);
  return () => clearInterval(timer);
}
