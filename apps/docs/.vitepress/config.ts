import { existsSync, readFileSync } from 'node:fs';
import { defineConfig, type DefaultTheme } from 'vitepress';

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
          { text: 'Weights and torchvision', link: '/guide/weights' },
        ],
      },
      { text: 'Results', items: [{ text: 'Benchmarks and results', link: '/results' }, { text: 'Demo in the browser', link: '/demo' }] },
      { text: 'Reference', items: [{ text: 'CLI', link: '/reference/cli' }, { text: 'API', link: '/api/', collapsed: true, items: apiSidebar }] },
    ],
    search: { provider: 'local' },
    outline: 'deep',
  },
  vite: {
    // The CPU backend's module awaits at top level; the search index of the API pages is a large chunk.
    build: { target: 'es2022', chunkSizeWarningLimit: 2048 },
    optimizeDeps: { esbuildOptions: { target: 'es2022' } },
  },
});
