import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The build lands inside the Python package, which serves index.html at `/` and the hashed
// assets under /console/ with a one-year immutable cache (server/runwire/http/console.py).
export default defineConfig({
  plugins: [react()],
  base: "/console/",
  build: {
    outDir: "../server/runwire/http/console_dist",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    // One bundle for the app and one for its dependencies: a small, cacheable set of files.
    rollupOptions: {
      output: {
        manualChunks: (id) => (id.includes("node_modules") ? "vendor" : undefined),
      },
    },
  },
});
