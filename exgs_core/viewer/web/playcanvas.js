// The PlayCanvas engine of the exgs viewer: .sog, .ply, compressed .ply, and .glb with KHR_gaussian_splatting.
import * as pc from "playcanvas";
import { projection, run } from "./common.js";

run({
  name: "playcanvas",
  version: pc.version,
  async init(canvas, file, bg) {
    const ext = file.name.split(".").pop().toLowerCase();
    if (!["sog", "ply", "glb"].includes(ext)) throw new Error(`PlayCanvas cannot show .${ext} files`);
    const device = await pc.createGraphicsDevice(canvas, {
      deviceTypes: [pc.DEVICETYPE_WEBGL2],
      antialias: false,
      alpha: false,
      preserveDrawingBuffer: true,
    });
    device.maxPixelRatio = 1;
    const app = new pc.Application(canvas, { graphicsDevice: device });
    app.setCanvasFillMode(pc.FILLMODE_NONE);
    app.setCanvasResolution(pc.RESOLUTION_FIXED, canvas.width, canvas.height);
    app.start();
    // ?pc_min_pixel_size=N: PlayCanvas skips splats whose footprint is under N pixels (default 2; 0 draws all).
    const minPixel = new URLSearchParams(location.search).get("pc_min_pixel_size");
    if (minPixel !== null) app.scene.gsplat.minPixelSize = Number(minPixel);
    // ?aa=1 (exgs sets it for scenes trained with mip-splatting antialiasing): opacity compensation on.
    if (new URLSearchParams(location.search).get("aa") === "1") app.scene.gsplat.antiAlias = true;

    // The file's own coordinates are the world: no entity rotation (PlayCanvas apps usually turn PLY-frame data
    // 180 degrees about z; exgs views are in the file's frame, so that would only have to be undone).
    const url = URL.createObjectURL(new Blob([file.bytes]));
    const asset = new pc.Asset(file.name, ext === "glb" ? "container" : "gsplat", { url, filename: file.name });
    await new Promise((resolve, reject) => {
      asset.once("load", resolve);
      asset.once("error", (err) => reject(new Error(`PlayCanvas could not load ${file.name}: ${err}`)));
      app.assets.add(asset);
      app.assets.load(asset);
    });
    let numSplats = 0;
    if (ext === "glb") {
      const entity = asset.resource.instantiateRenderEntity();
      app.root.addChild(entity);
      for (const a of asset.resource.gsplats || []) numSplats += a.resource.numSplats ?? a.resource.gsplatData?.numSplats ?? 0;
      if (!(asset.resource.gsplats || []).length) throw new Error(`${file.name} holds no KHR_gaussian_splatting primitive`);
    } else {
      const entity = new pc.Entity("splats");
      entity.addComponent("gsplat", { asset });
      app.root.addChild(entity);
      numSplats = asset.resource.numSplats ?? asset.resource.gsplatData?.numSplats ?? 0;
    }

    const camera = new pc.Entity("camera");
    camera.addComponent("camera", {
      clearColor: new pc.Color(bg[0], bg[1], bg[2], 1),
      toneMapping: pc.TONEMAP_LINEAR,
      gammaCorrection: pc.GAMMA_SRGB,
    });
    app.root.addChild(camera);
    let proj = null;
    camera.camera.calculateProjection = (mat) => mat.set(proj);
    return {
      numSplats,
      gl: device.gl,
      setView(v) {
        if (canvas.width !== v.width || canvas.height !== v.height) app.setCanvasResolution(pc.RESOLUTION_FIXED, v.width, v.height);
        const m = v.c2w;
        const world = new pc.Mat4().set([0, 1, 2, 3].flatMap((j) => [m[0][j], m[1][j], m[2][j], m[3][j]]));
        camera.setPosition(world.getTranslation());
        camera.setRotation(new pc.Quat().setFromMat4(world));
        camera.camera.nearClip = v.near;
        camera.camera.farClip = v.far;
        camera.camera.fov = (2 * Math.atan(v.height / (2 * v.fy)) * 180) / Math.PI;
        const p = projection(v, v.width, v.height);
        proj = [0, 1, 2, 3].flatMap((j) => [p[0][j], p[1][j], p[2][j], p[3][j]]); // column-major
        app.renderNextFrame = true;
      },
      render() {
        // PlayCanvas draws on its own frame loop; the preserved drawing buffer holds its last frame.
      },
    };
  },
});
