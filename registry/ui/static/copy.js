// modelx UI: copy buttons. A button with data-copy puts that text on the
// clipboard and says so for a moment. Served from /ui/-/ (no inline script).
(function () {
  'use strict';

  function fallback(text) {
    var area = document.createElement('textarea');
    area.value = text;
    area.setAttribute('readonly', '');
    area.className = 'offscreen';
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
    document.body.removeChild(area);
    return ok;
  }

  function show(button, ok) {
    button.dataset.state = ok ? 'copied' : 'failed';
    button.textContent = ok ? 'Copied' : 'Press Ctrl+C';
    window.setTimeout(function () { button.textContent = 'Copy'; }, 1500);
  }

  document.addEventListener('click', function (event) {
    var button = event.target.closest('button[data-copy]');
    if (!button) { return; }
    var text = button.getAttribute('data-copy');
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { show(button, true); },
        function () { show(button, fallback(text)); });
    } else {
      show(button, fallback(text));
    }
  });
}());
