// Tiny DOM helpers: elements are built with the DOM API, never from HTML strings,
// so no markup (and no inline style or script) ever comes from data.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function toast(message, kind = 'info') {
  const box = document.getElementById('toast');
  const item = h('div', { class: `toast-item ${kind}`, text: message });
  box.append(item);
  setTimeout(() => item.remove(), 5000);
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

export function field(label, input) {
  return h('label', { class: 'field' }, h('span', { text: label }), input);
}

export function button(text, onClick, attrs = {}) {
  return h('button', { type: 'button', ...attrs, onclick: onClick }, text);
}

/** Two-step confirmation on a button: the first click asks ("Confirm ..."), a second
 *  within 4 s answers true. No window.confirm (blocking, and unstyled). */
export function confirmed(control, question) {
  if (control.dataset.confirm === 'yes') return true;
  const label = control.textContent;
  control.dataset.confirm = 'yes';
  control.textContent = question;
  setTimeout(() => { control.dataset.confirm = ''; control.textContent = label; }, 4000);
  return false;
}
