/* dialog.js - one modal dialog for questions (rename, share, confirm).
 *
 * ask() resolves with what submit() returned, or null when cancelled. When
 * submit throws, its message shows inside the dialog, which stays open with
 * what was typed, so a person can correct it (nothing is lost to an error).
 */
import { $ } from './util.js';

export function ask({ title, text, label, value, okText, danger, submit }) {
  return new Promise((resolve) => {
    const d = $('dlg');
    const input = $('dlg-input');
    const ok = $('dlg-ok');
    const err = $('dlg-error');
    const hasInput = label != null;
    $('dlg-title').textContent = title;
    $('dlg-text').textContent = text || '';
    $('dlg-text').hidden = !text;
    $('dlg-label').textContent = label || '';
    $('dlg-label').hidden = !hasInput;
    input.hidden = !hasInput;
    input.value = value || '';
    err.textContent = '';
    ok.textContent = okText || 'OK';
    ok.classList.toggle('danger', !!danger);
    ok.disabled = false;

    const finish = (v) => {
      cleanup();
      if (d.open) d.close();
      resolve(v);
    };
    const onSubmit = async (ev) => {
      ev.preventDefault();
      if (ok.disabled) return;
      const v = hasInput ? input.value : true;
      if (!submit) { finish(v); return; }
      ok.disabled = true;
      err.textContent = '';
      try {
        finish(await submit(v));
      } catch (e) {
        err.textContent = e.message || String(e);
        ok.disabled = false;
        (hasInput ? input : ok).focus();
      }
    };
    const onCancel = (ev) => { if (ev) ev.preventDefault(); finish(null); };
    const cleanup = () => {
      $('dlg-form').removeEventListener('submit', onSubmit);
      $('dlg-cancel').removeEventListener('click', onCancel);
      d.removeEventListener('cancel', onCancel);
    };
    $('dlg-form').addEventListener('submit', onSubmit);
    $('dlg-cancel').addEventListener('click', onCancel);
    d.addEventListener('cancel', onCancel);
    d.showModal();
    if (hasInput) {
      input.focus();
      /* select the name part of a path or file name, not its extension */
      const v = input.value, slash = v.lastIndexOf('/') + 1, dot = v.lastIndexOf('.');
      input.setSelectionRange(slash, dot > slash ? dot : v.length);
    } else {
      ok.focus();
    }
  });
}
