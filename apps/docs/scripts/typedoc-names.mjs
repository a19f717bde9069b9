// A TypeDoc plugin: a package with several entry points (`@residual/core`, `@residual/core/node`)
// gets its main module named after the package's last name segment (`core`), where TypeDoc would
// leave it unnamed and so untitled in the sidebar and on its page.
import { Converter, ReflectionKind } from 'typedoc';

/** @param {import('typedoc').Application} app */
export function load(app) {
  app.converter.on(Converter.EVENT_RESOLVE_BEGIN, ({ project }) => {
    for (const m of project.children ?? []) {
      if (m.kindOf(ReflectionKind.Module) && m.name === '') m.name = (project.packageName ?? project.name).split('/').pop();
    }
  });
}
