import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// `npm run dev` serves on http://localhost:5173 (an origin `make run` allows by default) and reads
// /config.json from public/ when present; `make run` serves the built page with its own config.json.
export default defineConfig({
  plugins: [react()],
  server: { port: 5173, strictPort: true },
  build: { outDir: "dist", sourcemap: false },
});
