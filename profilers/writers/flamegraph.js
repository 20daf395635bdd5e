// vmtop flamegraph: click to zoom, search, hover details. Written for vmtop (MIT).
// Works in a standalone .svg document and in an <svg> inlined in HTML (several per page).
(function () {
  "use strict";
  var EPS = 1e-6;
  var script = document.currentScript;
  var svg = script && (script.ownerSVGElement || script.closest("svg"));
  if (!svg) {
    var all = document.querySelectorAll("svg.vmtop-flamegraph");
    svg = all[all.length - 1];
  }
  if (!svg) return;
  var framesG = svg.querySelector("g.frames");
  if (!framesG) return; // an empty profile has nothing to zoom or search

  var left = parseFloat(framesG.getAttribute("data-left"));
  var span = parseFloat(framesG.getAttribute("data-width"));
  var charWidth = parseFloat(framesG.getAttribute("data-char-width"));
  var textPad = parseFloat(framesG.getAttribute("data-text-pad"));
  var deeperSign = framesG.getAttribute("data-inverted") === "1" ? 1 : -1;
  var standalone = document.documentElement === svg;
  var statusEl = svg.querySelector("text.status");
  var matchedEl = svg.querySelector("text.matched");
  var resetEl = svg.querySelector("text.reset");
  var searchEl = svg.querySelector("text.search");
  var hint = "Click a frame to zoom" + (standalone ? ", Ctrl-F or / to search" : ", Search to find frames") +
    ", Esc to reset.";

  // Same rule as display_label() in svg.py: drop the directory of the file.
  function displayLabel(label) {
    var m = /^([\s\S]*) \(([^()]*)\)$/.exec(label);
    if (!m) return label;
    return m[1] + " (" + m[2].slice(m[2].lastIndexOf("/") + 1) + ")";
  }

  // Same rule as fit_text() in svg.py.
  function fitText(text, width) {
    var room = Math.floor((width - 2 * textPad) / charWidth);
    if (room < 3) return "";
    return text.length <= room ? text : text.slice(0, room - 2) + "..";
  }

  var nodes = [];
  var byElement = new Map();
  var gs = framesG.querySelectorAll("g.frame");
  for (var i = 0; i < gs.length; i++) {
    var g = gs[i];
    var rect = g.querySelector("rect");
    var tip = g.querySelector("title").textContent;
    var label = tip.slice(0, tip.lastIndexOf(" \u2014 "));
    var node = {
      g: g,
      rect: rect,
      text: g.querySelector("text"),
      tip: tip,
      label: label,
      shown: displayLabel(label),
      x: parseFloat(rect.getAttribute("x")),
      w: parseFloat(rect.getAttribute("width")),
      y: parseFloat(rect.getAttribute("y")),
      moved: false,
    };
    nodes.push(node);
    byElement.set(g, node);
  }
  var root = nodes.reduce(function (a, b) {
    return b.w > a.w + EPS || (Math.abs(b.w - a.w) <= EPS && (b.y - a.y) * deeperSign < 0) ? b : a;
  }, nodes[0]);
  var searchTerm = "";

  function place(n, x, w) {
    var moved = Math.abs(x - n.x) > EPS || Math.abs(w - n.w) > EPS;
    if (!moved && !n.moved) return; // already where it was drawn
    n.moved = moved;
    n.rect.setAttribute("x", x.toFixed(2));
    n.rect.setAttribute("width", w.toFixed(2));
    n.text.setAttribute("x", (x + textPad).toFixed(2));
    n.text.textContent = fitText(n.shown, w);
  }

  // classList changes are guarded: touching 30k elements' classes for nothing costs a restyle.
  function setClass(n, name, on) {
    if (n.g.classList.contains(name) !== on) n.g.classList.toggle(name, on);
  }

  function isDescendant(n, f) {
    return (n.y - f.y) * deeperSign > 0 && n.x >= f.x - EPS && n.x + n.w <= f.x + f.w + EPS;
  }

  function isAncestor(n, f) {
    return (f.y - n.y) * deeperSign > 0 && n.x <= f.x + EPS && n.x + n.w >= f.x + f.w - EPS;
  }

  function zoom(f) {
    if (!f || f === root) return unzoom();
    var scale = span / f.w;
    for (var i = 0; i < nodes.length; i++) {
      var n = nodes[i];
      if (n === f || isDescendant(n, f)) {
        setClass(n, "hide", false);
        setClass(n, "dim", false);
        place(n, left + (n.x - f.x) * scale, n.w * scale);
      } else if (isAncestor(n, f)) {
        setClass(n, "hide", false);
        setClass(n, "dim", true);
        place(n, left, span);
      } else {
        setClass(n, "hide", true);
      }
    }
    resetEl.classList.remove("hidden");
  }

  function unzoom() {
    for (var i = 0; i < nodes.length; i++) {
      var n = nodes[i];
      setClass(n, "hide", false);
      setClass(n, "dim", false);
      place(n, n.x, n.w);
    }
    resetEl.classList.add("hidden");
  }

  function matcher(term) {
    try {
      var re = new RegExp(term);
      return function (s) { return re.test(s); };
    } catch (e) {
      return function (s) { return s.indexOf(term) >= 0; };
    }
  }

  // Fraction of the total weight under matching frames. Frames nest (a child lies inside its
  // parent's interval) or are disjoint, so a sweep in x order that skips intervals inside the
  // last counted one counts every stack once.
  function matchedFraction(matched) {
    matched.sort(function (a, b) { return a.x - b.x || b.w - a.w; });
    var sum = 0;
    var end = -Infinity;
    for (var i = 0; i < matched.length; i++) {
      var n = matched[i];
      if (n.x + n.w <= end + EPS) continue;
      sum += n.w;
      end = n.x + n.w;
    }
    return sum / span;
  }

  function search(term) {
    searchTerm = term || "";
    var matched = [];
    var test = searchTerm ? matcher(searchTerm) : null;
    for (var i = 0; i < nodes.length; i++) {
      var n = nodes[i];
      var hit = test !== null && test(n.label);
      setClass(n, "match", hit);
      if (hit) matched.push(n);
    }
    if (!searchTerm) {
      matchedEl.classList.add("hidden");
      return 0;
    }
    var fraction = matchedFraction(matched);
    matchedEl.textContent = "Matched: " + (fraction * 100).toFixed(1) + "% (" + searchTerm + ")";
    matchedEl.classList.remove("hidden");
    return fraction;
  }

  function askSearch() {
    var term = window.prompt("Search frames (regular expression; empty clears):", searchTerm);
    if (term !== null) search(term);
  }

  function reset() {
    unzoom();
    search("");
  }

  framesG.addEventListener("click", function (e) {
    var g = e.target.closest("g.frame");
    if (g) zoom(byElement.get(g));
  });
  framesG.addEventListener("mouseover", function (e) {
    var g = e.target.closest("g.frame");
    if (g) statusEl.textContent = byElement.get(g).tip;
  });
  framesG.addEventListener("mouseout", function () {
    statusEl.textContent = hint;
  });
  resetEl.addEventListener("click", unzoom);
  searchEl.addEventListener("click", askSearch);
  window.addEventListener("keydown", function (e) {
    if (standalone && ((e.key === "f" && (e.ctrlKey || e.metaKey)) || e.key === "/")) {
      e.preventDefault();
      askSearch();
    } else if (e.key === "Escape") {
      reset();
    }
  });
  statusEl.textContent = hint;

  // For scripted checks (and the curious): svg.vmtopFlamegraph.search("re") -> fraction.
  svg.vmtopFlamegraph = { zoom: zoom, unzoom: unzoom, search: search, nodes: nodes };
})();
