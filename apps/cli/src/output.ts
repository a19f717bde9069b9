/** Output conventions: results on stdout (JSON with --json), everything for people on stderr. */

/** A line for people, on stderr. */
export const info = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

/** Prints a command's result: JSON on stdout with `json`, else the human form on stdout. */
export const emit = <T>(json: boolean, result: T, human: (r: T) => string): void => {
  process.stdout.write(json ? `${JSON.stringify(result)}\n` : `${human(result)}\n`);
};
