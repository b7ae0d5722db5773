(function(){
  const table=document.getElementById('board');
  const body=table.tBodies[0];
  const heads=Array.from(table.tHead.rows[0].cells);
  heads.forEach(function(th,col){
    th.addEventListener('click',function(){
      const asc=th.getAttribute('aria-sort')!=='ascending';
      heads.forEach(function(h){h.removeAttribute('aria-sort');});
      th.setAttribute('aria-sort',asc?'ascending':'descending');
      const num=th.classList.contains('num');
      const rows=Array.from(body.rows);
      rows.sort(function(a,b){
        const x=a.cells[col].dataset.sort, y=b.cells[col].dataset.sort;
        if(num){
          const p=x===''?-Infinity:parseFloat(x), q=y===''?-Infinity:parseFloat(y);
          return asc?p-q:q-p;
        }
        return asc?x.localeCompare(y):y.localeCompare(x);
      });
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
  document.getElementById('filter').addEventListener('input',function(ev){
    const q=ev.target.value.toLowerCase();
    Array.from(body.rows).forEach(function(r){
      r.hidden=q!=='' && r.dataset.search.indexOf(q)<0;
    });
  });
})();
