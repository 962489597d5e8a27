// Small DOM helpers. Text always goes in as text nodes (never parsed as markup).

/// h('td', {class: 'num', title: 'x'}, 'text', child, [more]) -> element.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'on') {
      for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    } else if (k === 'value' && tag === 'input') {
      el.setAttribute('value', String(v)); // also the default a form reset returns to
    } else if (k === 'value' || k === 'checked' || k === 'disabled' || k === 'hidden' || k === 'selected') {
      el[k] = v;
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/// A <select> with (value, label) options, `current` selected.
export function select(name, options, current, attrs = {}) {
  return h(
    'select',
    { name, ...attrs },
    options.map(([v, label]) => h('option', { value: v, selected: v === current }, label)),
  );
}

/// A table with a header row; `body` is the <tbody> to fill.
export function table(headers, body, attrs = {}) {
  return h('table', attrs, h('thead', {}, h('tr', {}, headers.map((x) => h('th', {}, x)))), body);
}
