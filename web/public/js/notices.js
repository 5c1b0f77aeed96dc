/* notices.js - messages at the top of the page.
 *
 * An error stays until its close button is pressed (nothing a person needs
 * to read vanishes on a timer); a confirmation ("Deleted x") fades after
 * a few seconds. Errors are announced (role=alert), confirmations politely.
 */
import { $, el } from './util.js';

const INFO_MS = 5000;

export function notify(message, kind = 'info') {
  const box = $('notices');
  const n = el('div', { class: 'notice notice-' + kind, role: kind === 'error' ? 'alert' : 'status' },
    el('span', { class: 'notice-text', text: message }),
    el('button', { type: 'button', class: 'notice-close', 'aria-label': 'Dismiss', text: '×',
      onclick: () => n.remove() }));
  box.append(n);
  if (kind !== 'error') setTimeout(() => n.remove(), INFO_MS);
  return n;
}

export function clearNotices() {
  $('notices').replaceChildren();
}
