/** Progress for long jobs: a live bar on a terminal, plain periodic lines otherwise (logs, CI). */
import cliProgress from 'cli-progress';

/** Numbers shown beside the bar. */
export interface ProgressFields {
  epoch: number;
  loss: number;
  accuracy: number;
  imagesPerSecond: number;
}

/** A progress display over `total` steps. */
export interface Progress {
  update(step: number, fields: ProgressFields): void;
  /** A line of text that must not be overwritten by the bar. */
  log(line: string): void;
  stop(): void;
}

const fmtEta = (s: number) => (Number.isFinite(s) ? (s >= 3600 ? `${(s / 3600).toFixed(1)}h` : s >= 60 ? `${Math.round(s / 60)}m` : `${Math.round(s)}s`) : '?');

/** A bar on stderr when it is a TTY, else a line every `every` steps. */
export const createProgress = (total: number, startStep: number, every = 50): Progress => {
  const started = Date.now();
  const eta = (step: number) => ((Date.now() - started) / 1000 / Math.max(step - startStep, 1)) * (total - step);
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        stream: process.stderr,
        format: 'epoch {epoch} |{bar}| {value}/{total} | loss {loss} | acc {accuracy} | {ips} img/s | ETA {etaText}',
        hideCursor: true,
        clearOnComplete: false,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, startStep, { epoch: 0, loss: '-', accuracy: '-', ips: '-', etaText: '?' });
    return {
      update: (step, f) =>
        bar.update(step, {
          epoch: f.epoch, loss: f.loss.toFixed(4), accuracy: f.accuracy.toFixed(3), ips: f.imagesPerSecond.toFixed(1), etaText: fmtEta(eta(step)),
        }),
      log: (line) => {
        bar.stop();
        process.stderr.write(`${line}\n`);
        bar.start(total, bar.getProgress() * total);
      },
      stop: () => bar.stop(),
    };
  }
  return {
    update: (step, f) => {
      if (step % every === 0 || step === total)
        process.stderr.write(
          `step ${step}/${total} epoch ${f.epoch} loss ${f.loss.toFixed(4)} acc ${f.accuracy.toFixed(3)} ${f.imagesPerSecond.toFixed(1)} img/s ETA ${fmtEta(eta(step))}\n`,
        );
    },
    log: (line) => process.stderr.write(`${line}\n`),
    stop: () => {},
  };
};
