import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { defineConfig, type DefaultTheme } from 'vitepress';

// Cross-origin isolation: only on such a page may the CPU backend share its memory with Web Workers,
// so the demo runs on every core. Every resource of the site is its own, so require-corp blocks none.
const ISOLATION = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };

// TypeDoc writes the API sidebar with the pages (scripts run by `build` before VitePress).
const apiSidebarFile = new URL('../pages/api/typedoc-sidebar.json', import.meta.url);
if (!existsSync(apiSidebarFile)) throw new Error('docs: pages/api is missing; run `pnpm build` (it runs TypeDoc first), not vitepress alone');
const apiSidebar = JSON.parse(readFileSync(apiSidebarFile, 'utf8')) as DefaultTheme.SidebarItem[];

export default defineConfig({
  title: 'residual',
  description: 'Deep residual networks trained and run from TypeScript, on the CPU and on WebGPU',
  srcDir: 'pages',
  srcExclude: ['_generated/**'],
  outDir: 'dist',
  lastUpdated: false,
  head: [['link', { rel: 'icon', type: 'image/svg+xml', href: '/favicon.svg' }]],
  themeConfig: {
    nav: [
      { text: 'Guide', link: '/guide/quick-start' },
      { text: 'Reference', items: [{ text: 'CLI', link: '/reference/cli' }, { text: 'API', link: '/api/' }] },
      { text: 'Results', link: '/results' },
      { text: 'Demo', link: '/demo' },
    ],
    sidebar: [
      {
        text: 'Guide',
        items: [
          { text: 'Quick start', link: '/guide/quick-start' },
          { text: 'Concepts', link: '/guide/concepts' },
          { text: 'Training on CIFAR-10', link: '/guide/cifar10' },
          { text: 'Training on ImageNet', link: '/guide/imagenet' },
          { text: 'Training on several processes', link: '/guide/distributed' },
          { text: "The paper's models", link: '/guide/models' },
          { text: 'Reproducing the paper', link: '/guide/paper' },
          { text: 'Weights and torchvision', link: '/guide/weights' },
        ],
      },
      { text: 'Results', items: [{ text: 'Benchmarks and results', link: '/results' }, { text: 'Demo in the browser', link: '/demo' }] },
      { text: 'Reference', items: [{ text: 'CLI', link: '/reference/cli' }, { text: 'API', link: '/api/', collapsed: true, items: apiSidebar }] },
    ],
    search: { provider: 'local' },
    outline: 'deep',
  },
  // The headers for static hosts that read a `_headers` file (Netlify, Cloudflare Pages); the site's test serves them too.
  buildEnd: ({ outDir }) =>
    writeFileSync(join(outDir, '_headers'), `/*\n${Object.entries(ISOLATION).map(([name, value]) => `  ${name}: ${value}\n`).join('')}`),
  vite: {
    // Set before VitePress's own middleware, which serves the pages without Vite's `server.headers`.
    plugins: [{
      name: 'cross-origin isolation',
      configureServer({ middlewares }) {
        middlewares.use((_req, res, next) => {
          for (const [name, value] of Object.entries(ISOLATION)) res.setHeader(name, value);
          next();
        });
      },
    }],
    // The CPU backend's module awaits at top level; the search index of the API pages is a large chunk.
    build: { target: 'es2022', chunkSizeWarningLimit: 2048 },
    optimizeDeps: { esbuildOptions: { target: 'es2022' } },
  },
});
