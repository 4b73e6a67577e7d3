// The Spark (three.js) engine of the exgs viewer: .spz (v2-v4), .ply, compressed .ply, .splat, .ksplat, .sog.
import { SparkRenderer, SplatMesh } from "@sparkjsdev/spark";
import * as THREE from "three";
import { projection, run } from "./common.js";

// Extension Spark's loader understands for each exgs format name (the server passes the file under such a name).
const TYPES = { spz: "spz", ply: "ply", splat: "splat", ksplat: "ksplat", sog: "sog" };

run({
  name: "spark",
  version: __SPARK_VERSION__, // eslint-disable-line no-undef -- set by esbuild --define
  async init(canvas, file, bg) {
    const ext = file.name.split(".").pop().toLowerCase();
    if (!(ext in TYPES)) throw new Error(`Spark cannot show .${ext} files`);
    const renderer = new THREE.WebGLRenderer({ canvas, antialias: false, alpha: false, preserveDrawingBuffer: true });
    renderer.setPixelRatio(1);
    renderer.setSize(canvas.width, canvas.height, false);
    renderer.outputColorSpace = THREE.SRGBColorSpace; // Spark then writes the file's colours unchanged
    renderer.setClearColor(new THREE.Color().setRGB(bg[0], bg[1], bg[2], THREE.SRGBColorSpace), 1);
    const scene = new THREE.Scene();
    const camera = new THREE.PerspectiveCamera();
    const spark = new SparkRenderer({ renderer, enableLod: false });
    scene.add(spark);
    const ext32 = new URLSearchParams(location.search).get("spark_ext") !== "0";
    const mesh = new SplatMesh({ fileBytes: file.bytes, fileName: file.name, extSplats: ext32, lod: false });
    await mesh.initialized;
    scene.add(mesh);
    return {
      numSplats: mesh.numSplats,
      gl: renderer.getContext(),
      setView(v) {
        renderer.setSize(v.width, v.height, false);
        const m = new THREE.Matrix4().set(...v.c2w.flat());
        m.decompose(camera.position, camera.quaternion, camera.scale);
        camera.near = v.near;
        camera.far = v.far;
        camera.fov = (2 * Math.atan(v.height / (2 * v.fy)) * 180) / Math.PI;
        camera.aspect = v.width / v.height;
        camera.updateMatrixWorld(true);
        camera.projectionMatrix.set(...projection(v, v.width, v.height).flat());
        camera.projectionMatrixInverse.copy(camera.projectionMatrix).invert();
      },
      render() {
        renderer.render(scene, camera);
      },
      // Spark updates and sorts after a frame, asynchronously; the image is final when none of that is pending.
      busy: () => spark.sorting || spark.sortDirty || spark.updateTimeoutId !== -1 || spark.sortTimeoutId !== -1,
    };
  },
});
