import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

// The API serves dist/ at / and dist/assets at /assets; `npm run dev` proxies the API.
const api = process.env.LXA_API_URL ?? "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [react()],
  build: { outDir: "dist", emptyOutDir: true, chunkSizeWarningLimit: 800 },
  server: { proxy: { "/api": { target: api, changeOrigin: false } } },
  test: { environment: "node", include: ["src/**/*.test.ts"] },
});
