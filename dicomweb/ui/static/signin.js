import { h } from './dom.js';
export function mount(main) { main.append(h('p', { class: 'muted', text: 'Coming soon.' })); }
