/* AG Grid helpers: severity ordering (by rank, then peak, as the query sorts), and j / k to
 * walk the review queue. */
(function () {
  "use strict";
  const dagfuncs = (window.dashAgGridFunctions = window.dashAgGridFunctions || {});
  const RANK = { low: 0, medium: 1, high: 2 };
  dagfuncs.bsSeverity = function (a, b, nodeA, nodeB) {
    const byRank = (RANK[a] ?? -1) - (RANK[b] ?? -1);
    if (byRank || !nodeA || !nodeB) return byRank;
    return (nodeA.data.peak ?? -Infinity) - (nodeB.data.peak ?? -Infinity);
  };

  let row = -1;
  document.addEventListener("keydown", function (ev) {
    if (ev.key !== "j" && ev.key !== "k") return;
    const tag = (ev.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || ev.target.isContentEditable) return;
    if (!document.getElementById("rv-grid") || !window.dash_ag_grid) return;
    const api = window.dash_ag_grid.getApi("rv-grid");
    const n = api.getDisplayedRowCount();
    if (!n) return;
    row = Math.min(Math.max(row + (ev.key === "j" ? 1 : -1), 0), n - 1);
    const node = api.getDisplayedRowAtIndex(row);
    api.ensureIndexVisible(row);
    api.setFocusedCell(row, "episode");
    window.dash_clientside.set_props("rv-sel", { data: parseInt(node.id, 10) });
    ev.preventDefault();
  });
})();
