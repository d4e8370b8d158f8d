// API tokens (admins): the list from GET /api/tokens (never a secret), a form that creates
// one (POST /api/tokens) and shows its secret once, revoke with a second click
// (DELETE /api/tokens/NAME). Both acts are on the audit trail.
import { button, clear, confirmed, field, h, toast } from './dom.js';
import { json, sendJson } from './api.js';

const ROLES = ['viewer', 'uploader', 'technologist', 'radiologist', 'admin'];

export function mount(main) {
  const inputs = {
    name: h('input', { name: 'name', required: true, maxlength: 64, pattern: '[A-Za-z0-9][A-Za-z0-9._@\\-]*', autocomplete: 'off' }),
    role: h('select', { name: 'role' }, ROLES.map((r) => h('option', { value: r, text: r }))),
    facilities: h('input', { name: 'facilities', placeholder: 'all (or: North, South)', autocomplete: 'off' }),
    expires: h('input', { name: 'expires_days', type: 'number', min: 0.01, step: 'any', placeholder: 'never' }),
  };
  const problem = h('p', { class: 'error', role: 'alert' });
  const reveal = h('div', { class: 'reveal', 'aria-live': 'polite' });
  const body = h('tbody');

  const form = h('form', { class: 'form-grid token-form', onsubmit: async (e) => {
    e.preventDefault();
    problem.textContent = '';
    const request = {
      name: inputs.name.value.trim(),
      role: inputs.role.value,
      facilities: inputs.facilities.value.split(',').map((f) => f.trim()).filter(Boolean),
    };
    if (inputs.expires.value) request.expires_days = Number(inputs.expires.value);
    try {
      const made = await sendJson('/api/tokens', 'POST', request);
      form.reset();
      showSecret(made);
      load();
    } catch (error) { problem.textContent = error.message; }
  } },
  field('Name', inputs.name), field('Role', inputs.role), field('Facilities', inputs.facilities),
  field('Expires in (days)', inputs.expires),
  h('button', { type: 'submit', class: 'primary', text: 'Create token' }));

  // The secret lives only in this element until "Done" (or leaving the page) removes it.
  function showSecret(made) {
    const secret = h('code', { class: 'secret', text: made.secret });
    const copy = button('Copy', async () => {
      try { await navigator.clipboard.writeText(made.secret); toast('Secret copied', 'ok'); } catch { toast('Copy it by hand (select the text)', 'error'); }
    }, { class: 'copy' });
    clear(reveal, h('section', { class: 'panel new-token', dataset: { name: made.name } },
      h('h2', { text: `Token ${made.name} created` }),
      h('p', { text: 'Its secret is shown once, now: store it (a password manager, the client\'s configuration). It cannot be shown again; revoke the token and create another if it is lost.' }),
      secret, h('div', { class: 'links' }, copy, button('Done', () => clear(reveal), { class: 'done' }))));
  }

  clear(main, h('h1', { class: 'sr-only', text: 'API tokens' }), reveal,
    h('section', { class: 'panel' }, h('h2', { text: 'Create an API token' }),
      h('p', { class: 'muted', text: 'Roles: viewer (query, retrieve), uploader (store), technologist (worklist), radiologist, admin (everything). Facilities limit a token to those facilities\' studies.' }),
      form, problem),
    h('section', { class: 'panel' }, h('h2', { text: 'API tokens' }),
      h('div', { class: 'table-wrap' }, h('table', { class: 'tokens' },
        h('thead', {}, h('tr', {}, ['Name', 'Role', 'Facilities', 'State', 'Created', 'Expires', 'Revoked', ''].map((t) => h('th', { text: t })))),
        body))));

  const day = (iso) => (iso ? iso.replace('T', ' ').slice(0, 16) : '');

  async function load() {
    let list;
    try { list = await json('/api/tokens'); } catch (error) {
      clear(body, h('tr', {}, h('td', { colspan: 8, class: 'error', text: error.message }))); return;
    }
    clear(body, list.length ? list.map((t) => h('tr', { dataset: { name: t.name, state: t.state } },
      h('td', { text: t.name }), h('td', { text: t.role }), h('td', { text: t.facilities.join(', ') || 'all' }),
      h('td', {}, h('span', { class: `status-pill ${t.state}`, text: t.state })),
      h('td', { text: day(t.created_at) }), h('td', { text: day(t.expires_at) || 'never' }), h('td', { text: day(t.revoked_at) }),
      h('td', {}, t.state === 'revoked' ? '' : button('Revoke', async (event) => {
        if (!confirmed(event.currentTarget, 'Confirm revoke')) return;
        try {
          await json(`/api/tokens/${encodeURIComponent(t.name)}`, { method: 'DELETE' });
          toast(`Token ${t.name} revoked`, 'ok');
          load();
        } catch (error) { toast(error.message, 'error'); }
      }, { class: 'revoke', 'aria-label': `Revoke ${t.name}` }))))
      : h('tr', {}, h('td', { colspan: 8, class: 'empty', text: 'No API token.' })));
  }

  load();
  inputs.name.focus();
}
