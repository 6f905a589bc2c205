"""The page around the plots: one self-contained HTML document (inline CSS, inline SVG, inline script; no
network), with a header (phase, counts, best trial), a section per plot, the table, the manifest and the
summary. ``?section=ID`` in the address shows that section alone (the screenshots use it)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import yaml

from kubetune.results.report import table
from kubetune.results.report.data import Frame, Section
from kubetune.results.report.svg import STATE_COLOURS, esc

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2230;background:#f6f7f9}
header{background:#1d2230;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}
header .meta{opacity:.85;margin-top:4px}nav{background:#fff;border-bottom:1px solid #dde;padding:6px 24px;
position:sticky;top:0;z-index:2}nav a{margin-right:14px;color:#2a6fdb;text-decoration:none}
main{padding:8px 24px 40px;max-width:1260px}section{background:#fff;border:1px solid #e1e4ea;border-radius:6px;
margin:14px 0;padding:10px 16px 14px}section h2{font-size:17px;margin:4px 0 4px}.note{color:#555;margin:0 0 8px;
max-width:1100px}.row,.grid{display:flex;flex-wrap:wrap;gap:8px}svg.plot{background:#fff;max-width:100%;height:auto}
.frame{fill:none;stroke:#c9ced8}.grid line,.grid{stroke:none}line.grid{stroke:#eef0f4}.axis{stroke:#8a93a6}
.tick{font-size:10px;fill:#555}.label{font-size:11.5px;fill:#333}.best{fill:none;stroke:#d62728;stroke-width:1.6}
.pt{stroke:#fff;stroke-width:.4}.dots{fill:none;stroke-linecap:round}
.pc{fill:none;stroke-width:1;stroke-opacity:.55}.pc:hover{stroke-opacity:1;stroke-width:2.5}
.lc{fill:none;stroke-width:1.1;stroke-opacity:.7}.lc.s-EarlyStopped{stroke-dasharray:4 2}
.stop{stroke:#e8871e;stroke-width:1.6}
.bar{fill:#2a6fdb}.chance{stroke:#999;stroke-width:2}.legend span{display:inline-block;margin-right:12px}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;vertical-align:-1px}
.tablewrap{max-height:560px;overflow:auto;border:1px solid #e1e4ea}table{border-collapse:collapse;font-size:12.5px;
width:100%}th{position:sticky;top:0;background:#eef1f6;cursor:pointer;text-align:left;padding:4px 8px;
white-space:nowrap}td{padding:3px 8px;border-top:1px solid #f0f1f4;white-space:nowrap;max-width:420px;
overflow:hidden;text-overflow:ellipsis}td.num{text-align:right;font-variant-numeric:tabular-nums}
.pager{margin:6px 0}.pager button{margin-right:6px}
th.asc:after{content:" ▲"}th.desc:after{content:" ▼"}pre{background:#f6f7f9;padding:10px;overflow:auto;
max-height:480px;font-size:12.5px}#tip{position:fixed;pointer-events:none;background:#1d2230;color:#fff;
padding:6px 9px;border-radius:4px;font-size:12px;display:none;z-index:9;max-width:420px;white-space:pre-wrap}
body.only nav,body.only header{display:none}body.only section{display:none}body.only section.shown{display:block}
"""

SCRIPT = r"""
(function(){
const data=JSON.parse(document.getElementById('trials-data').textContent);
const cols=data.columns,rows=data.rows,table=document.getElementById('trials');
function cell(v){if(v===null||v===undefined)return '';if(typeof v==='number')return String(+v.toPrecision(6));
return String(v).replace(/[&<>"]/g,ch=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[ch]));}
const PAGE=data.page;let page=0;const pager=document.getElementById('pager');
function draw(list){const html=[];for(const r of list.slice(page*PAGE,(page+1)*PAGE)){html.push('<tr data-i="'+r.i+
'">'+r.v.map(v=>'<td'+(typeof v==='number'?' class="num"':'')+'>'+cell(v)+'</td>').join('')+'</tr>');}
table.tBodies[0].innerHTML=html.join('');const last=Math.max(0,Math.ceil(list.length/PAGE)-1);
pager.querySelector('span').textContent=list.length?'rows '+(page*PAGE+1)+'–'+Math.min(list.length,(page+1)*PAGE)+
' of '+list.length:'no rows';pager.querySelector('[data-go="-1"]').disabled=page<=0;
pager.querySelector('[data-go="1"]').disabled=page>=last;}
const items=rows.map((v,i)=>({i:i,v:v}));
table.tHead.innerHTML='<tr>'+cols.map((c,k)=>'<th data-k="'+k+'">'+cell(c)+'</th>').join('')+'</tr>';
let key=-1,dir=1;
table.tHead.addEventListener('click',e=>{const th=e.target.closest('th');if(!th)return;const k=+th.dataset.k;
dir=(k===key)?-dir:1;key=k;items.sort((a,b)=>{const x=a.v[k],y=b.v[k];if(x===y)return 0;
if(x===null||x===undefined||x==='')return 1;if(y===null||y===undefined||y==='')return -1;
return (x<y?-1:1)*dir;});for(const h of table.tHead.rows[0].cells)h.className='';
th.className=dir>0?'asc':'desc';page=0;draw(items);});
pager.addEventListener('click',e=>{const b=e.target.closest('button');if(!b)return;page+=+b.dataset.go;draw(items);});
draw(items);
const tip=document.getElementById('tip');
document.addEventListener('mouseover',e=>{const el=e.target.closest&&e.target.closest('svg [data-i]');
if(!el||el.dataset.i<0){tip.style.display='none';return;}const r=rows[+el.dataset.i];if(!r)return;
const lines=[r[1]+'  '+r[2],cols[3]+' = '+cell(r[3])];
for(let k=4;k<4+data.params;k++)lines.push(cols[k]+' = '+cell(r[k]));
tip.textContent=lines.join('\n');tip.style.display='block';});
document.addEventListener('mousemove',e=>{tip.style.left=(e.clientX+14)+'px';tip.style.top=(e.clientY+12)+'px';});
for(const box of document.querySelectorAll('input[data-state]')){box.addEventListener('change',()=>
document.body.classList.toggle('hide-'+box.dataset.state,!box.checked));}
const only=new URLSearchParams(location.search).get('section');
if(only){const s=document.getElementById(only);if(s){document.body.classList.add('only');s.classList.add('shown');}}
window.kubetuneReady=true;
})();
"""

CHECK = r"""
(function(){const out=document.createElement('div');out.id='report-check';out.hidden=true;
out.dataset.errors=JSON.stringify(window.kubetuneErrors);out.dataset.ready=String(!!window.kubetuneReady);
out.dataset.rows=String(document.querySelectorAll('#trials tbody tr').length);
out.dataset.total=String(JSON.parse(document.getElementById('trials-data').textContent).rows.length);document.body.appendChild(out);})();
"""


def render_page(frame: Frame, sections: list[Section], table_data: str, now: datetime | None = None) -> str:
    results = frame.results
    now = now or datetime.now(UTC)
    states = sorted(set(frame.states) | {"Failed"}, key=list(STATE_COLOURS).index)
    css = "".join(f".s-{s}{{fill:{c}}}.hide-{s} .s-{s}{{display:none}}" for s, c in STATE_COLOURS.items()) + CSS
    css += "".join(f".lc.s-{s},.tl.s-{s}{{stroke:{c}}}" for s, c in STATE_COLOURS.items())
    nav = "".join(f'<a href="#{s.id}">{esc(s.title)}</a>' for s in sections)
    nav += '<a href="#table">Trials</a><a href="#manifest">Manifest</a><a href="#summary">Summary</a>'
    body = "".join(_section(s, states) for s in sections)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(results.name)}: kubetune report</title><style>{css}</style>"
        "<script>window.kubetuneErrors=[];window.addEventListener('error',e=>window.kubetuneErrors.push("
        "String(e.message)));</script></head><body>"
        f"<header><h1>{esc(results.name)}</h1><div class=\"meta\">{esc(_headline(frame))}</div>"
        f'<div class="meta">from {esc(results.source)}, reported {now:%Y-%m-%d %H:%M} UTC by kubetune</div></header>'
        f"<nav>{nav}</nav><main>{body}{_section(table.render(frame), [])}{_manifest(frame)}{_summary(frame)}</main>"
        f'<div id="tip"></div><script type="application/json" id="trials-data">{table_data}</script>'
        f"<script>{SCRIPT}</script><script>{CHECK}</script></body></html>")


def _headline(frame: Frame) -> str:
    results = frame.results
    counts = ", ".join(f"{n} {s}" for s, n in sorted(results.counts().items()))
    best = results.best()
    text = f"{results.phase}: {frame.n} trials ({counts or 'none yet'})"
    if best is not None:
        text += f"; best {results.metric} {best.value:.6g} ({best.id}, {results.direction})"
    return text


def _legend(states: list[str]) -> str:
    boxes = "".join(f'<span><label><input type="checkbox" checked data-state="{s}"><i class="s-{s}" '
                    f'style="background:{STATE_COLOURS[s]}"></i>{s}</label></span>' for s in states)
    return f'<div class="legend">show: {boxes}</div>'


def _section(section: Section, states: list[str]) -> str:
    legend = _legend(states) if section.id in ("history", "timeline", "curves") and section.body else ""
    return (f'<section id="{section.id}"><h2>{esc(section.title)}</h2><p class="note">{section.note}</p>'
            f"{legend}{section.body}</section>")


def _manifest(frame: Frame) -> str:
    text = yaml.safe_dump(frame.results.manifest, sort_keys=False, width=120)
    return f'<section id="manifest"><h2>Manifest</h2><pre>{esc(text)}</pre></section>'


def _summary(frame: Frame) -> str:
    summary = frame.results.summary or {"phase": frame.results.phase, "counts": frame.results.counts()}
    text = json.dumps(summary, indent=2, default=str)
    return f'<section id="summary"><h2>Summary</h2><pre>{esc(text)}</pre></section>'
