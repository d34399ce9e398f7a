const kit = window.MSGPP_KIT;
const $ = (id) => document.getElementById(id);
$('instructions').textContent = kit.instructions;
for (const s of kit.sessions) { const o = document.createElement('option'); o.value = s.id; o.textContent = s.id; $('session').appendChild(o); }
const wanted = new URLSearchParams(location.search).get('session');
if (wanted) $('session').value = wanted;
let session = null, index = 0, shownAt = 0, played = {A: false, B: false};
const answers = [];
function show() {
  const item = session.items[index];
  $('progress').textContent = `pair ${index + 1} of ${session.items.length}`;
  played = {A: false, B: false};
  $('chooseA').disabled = $('chooseB').disabled = true;
  $('audioA').src = `audio/${item}_A.wav`; $('audioB').src = `audio/${item}_B.wav`;
  shownAt = Date.now();
}
for (const side of ['A', 'B']) {
  $('audio' + side).addEventListener('play', () => {
    played[side] = true;
    if (played.A && played.B) $('chooseA').disabled = $('chooseB').disabled = false;
  });
  $('choose' + side).addEventListener('click', () => {
    answers.push({item: session.items[index], choice: side, ms: Date.now() - shownAt});
    $('audioA').pause(); $('audioB').pause();
    index += 1;
    if (index < session.items.length) show(); else finish();
  });
}
function finish() {
  const result = {format: 'msgpp-listening-answers/1', kit_id: kit.kit_id, session: session.id,
                  listener: $('listener').value.trim(), finished: new Date().toISOString(), answers};
  const text = JSON.stringify(result, null, 1);
  $('answersText').value = text;
  $('download').href = 'data:application/json;charset=utf-8,' + encodeURIComponent(text);
  $('download').download = `answers-${session.id}-${result.listener || 'anonymous'}.json`;
  $('trial').classList.add('hidden'); $('done').classList.remove('hidden');
}
$('start').addEventListener('click', () => {
  if (!$('listener').value.trim()) { $('listener').focus(); return; }
  session = kit.sessions.find((s) => s.id === $('session').value);
  $('intro').classList.add('hidden'); $('trial').classList.remove('hidden');
  index = 0; show();
});
document.body.dataset.sessions = kit.sessions.length;
