// Picks the engine for the file and loads its bundle: Babylon.js for .spz, PlayCanvas for .sog/.glb, Spark for the
// rest (``?engine=babylon|playcanvas|spark`` overrides; exgs_core/viewer ENGINES_FOR says who reads what).
function fail(e) {
  const error = String((e && e.message) || e);
  window.__exgs = { info: () => ({ state: "error", error }) };
  document.getElementById("hud").textContent = `exgs view: ${error}`;
}
try {
  const params = new URLSearchParams(location.search);
  const inline = document.getElementById("exgs-data");
  const name = (inline ? inline.dataset.name : params.get("name") || params.get("file") || "").toLowerCase();
  const ext = name.split("?")[0].split(".").pop();
  const byExt = ext === "spz" ? "babylon" : ["sog", "glb"].includes(ext) ? "playcanvas" : "spark";
  const engine = params.get("engine") || (inline && inline.dataset.engine) || byExt;
  if (!["spark", "playcanvas", "babylon"].includes(engine)) throw new Error(`unknown engine ${engine}`);
  import(new URL(`${engine}.js`, import.meta.url).href).catch(fail);
} catch (e) {
  fail(e);
}
