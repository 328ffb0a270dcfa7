/**
 * The example app: `npm run example` serves it (Vite's dev server, /api proxied to
 * VIDPIPE_API, default http://127.0.0.1:8000, i.e. `make run`), `npm run build:example`
 * builds it under example/dist (or EXAMPLE_OUT_DIR) for the path /example/.
 * "@vidpipe/react" resolves to this package's source: the app imports nothing else of it.
 */
import { fileURLToPath } from "node:url";

import { defineConfig } from "vite";

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
const api = process.env.VIDPIPE_API ?? "http://127.0.0.1:8000";

export default defineConfig({
  root: here("."),
  base: "/example/",
  esbuild: { jsx: "automatic" },
  resolve: {
    alias: [
      { find: /^@vidpipe\/react\/styles\.css$/, replacement: here("../src/styles.css") },
      { find: /^@vidpipe\/react$/, replacement: here("../src/index.ts") },
    ],
  },
  server: { proxy: { "/api": { target: api, changeOrigin: false } } },
  build: {
    outDir: process.env.EXAMPLE_OUT_DIR ?? here("dist"),
    emptyOutDir: true,
    rollupOptions: {
      // TanStack Query's "use client" lines mean nothing outside React Server Components
      onwarn(warning, warn) {
        if (warning.code !== "MODULE_LEVEL_DIRECTIVE") warn(warning);
      },
    },
  },
  logLevel: "warn",
});
