// The Babylon.js engine of the exgs viewer: .spz (v2-v4, decoded by Niantic's reference library as @adobe/spz,
// served from this page's own folder), .sog, .ply, .splat, and .glb with KHR_gaussian_splatting.
import { TargetCamera } from "@babylonjs/core/Cameras/targetCamera.js";
import { Engine } from "@babylonjs/core/Engines/engine.js";
import { ImportMeshAsync } from "@babylonjs/core/Loading/sceneLoader.js";
import { Color4 } from "@babylonjs/core/Maths/math.color.js";
import { Matrix, Vector3 } from "@babylonjs/core/Maths/math.vector.js";
import { Scene } from "@babylonjs/core/scene.js";
import * as fflate from "fflate";
import "@babylonjs/loaders/SPLAT/index.js";
import "@babylonjs/loaders/glTF/2.0/index.js";
import { base64Bytes, projection, run } from "./common.js";

const EXTENSIONS = ["spz", "sog", "ply", "splat", "glb"];

run({
  name: "babylon",
  version: Engine.Version,
  async init(canvas, file, bg) {
    const ext = file.name.split(".").pop().toLowerCase();
    if (!EXTENSIONS.includes(ext)) throw new Error(`Babylon.js cannot show .${ext} files`);
    const engine = new Engine(canvas, false, { preserveDrawingBuffer: true, alpha: false, premultipliedAlpha: false });
    engine.setHardwareScalingLevel(1);
    const scene = new Scene(engine);
    scene.useRightHandedSystem = true; // the file's axes as they are: no mirror of z
    scene.clearColor = new Color4(bg[0], bg[1], bg[2], 1);
    const camera = new TargetCamera("camera", new Vector3(0, 0, 0), scene);

    const url = URL.createObjectURL(new Blob([file.bytes]));
    // A self-contained page carries the decoder inline (base64); a served page has it beside this bundle.
    const inlineSpz = document.getElementById("exgs-spz");
    const spzUrl = inlineSpz
      ? URL.createObjectURL(new Blob([base64Bytes(inlineSpz.textContent)], { type: "text/javascript" }))
      : new URL("spz.js", import.meta.url).href;
    const result = await ImportMeshAsync(url, scene, {
      pluginExtension: `.${ext}`,
      pluginOptions: {
        // flipY: keep y as stored (the loader otherwise mirrors it); the SPZ decoder comes from this page's folder
        // (fflate unzips .sog; without it the loader would fetch it from a CDN)
        splat: { flipY: true, spzLibraryUrl: spzUrl, fflate },
        gltf: {},
      },
    });
    const splats = result.meshes.filter((m) => m.getClassName && m.getClassName().startsWith("GaussianSplatting"));
    if (!splats.length) throw new Error(`${file.name} holds no Gaussian splats Babylon.js can show`);
    // The world is the file's own frame. The splat loader mirrors y for some formats (SOG always): undo it. glTF:
    // the loader's __root__ node turns right-handed glTF into Babylon's left-handed default; in a right-handed
    // scene it is the identity, so the node transforms of the file are all that applies.
    if (ext !== "glb") {
      for (const m of splats) {
        m.position.setAll(0);
        m.scaling.setAll(1);
        m.rotationQuaternion = null;
        m.rotation.setAll(0);
        m.computeWorldMatrix(true);
      }
    }
    let numSplats = 0;
    for (const m of splats) numSplats += m.splatCount ?? m._vertexCount ?? 0;

    let proj = Matrix.Identity();
    return {
      numSplats,
      gl: engine._gl,
      setView(v) {
        engine.setSize(v.width, v.height);
        const m = v.c2w;
        const eye = new Vector3(m[0][3], m[1][3], m[2][3]);
        camera.position = eye;
        camera.upVector = new Vector3(m[0][1], m[1][1], m[2][1]);
        camera.setTarget(eye.subtract(new Vector3(m[0][2], m[1][2], m[2][2])));
        camera.minZ = v.near;
        camera.maxZ = v.far;
        camera.fov = 2 * Math.atan(v.height / (2 * v.fy));
        const p = projection(v, v.width, v.height);
        proj = Matrix.FromArray([0, 1, 2, 3].flatMap((j) => [p[0][j], p[1][j], p[2][j], p[3][j]]));
        camera.freezeProjectionMatrix(proj);
      },
      render() {
        scene.render();
      },
      // Babylon.js compiles shaders and sorts asynchronously: busy until the scene is ready (shaders compiled, data
      // uploaded) and the last sort is in (_isDepthSortSettled, kept for deterministic screenshots).
      busy: splats.every((m) => "_isDepthSortSettled" in m)
        ? () => !scene.isReady(true) || !splats.every((m) => m._isDepthSortSettled && m.isReady(true))
        : undefined,
    };
  },
});
