function msgppCheck(){
  const imgs=[...document.querySelectorAll('img.figure')];
  const auds=[...document.querySelectorAll('audio')];
  const c=document.getElementById('page-check');
  c.dataset.imagesTotal=imgs.length;
  c.dataset.imagesLoaded=imgs.filter(i=>i.complete&&i.naturalWidth>0).length;
  c.dataset.audioTotal=auds.length;
  c.dataset.audioReady=auds.filter(a=>a.readyState>=1&&!a.error).length;
  c.dataset.audioErrors=auds.filter(a=>a.error).length;
  c.textContent=`figures ${c.dataset.imagesLoaded}/${imgs.length}, players ready ${c.dataset.audioReady}/${auds.length}`;
}
window.addEventListener('load',msgppCheck);
document.querySelectorAll('audio').forEach(a=>{a.addEventListener('loadedmetadata',msgppCheck);a.addEventListener('error',msgppCheck);});
