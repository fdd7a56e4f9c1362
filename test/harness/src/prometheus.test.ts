import { describe, expect, it } from 'vitest';
import { prometheusConfig, startPrometheus } from './prometheus.js';

describe('prometheus helper', () => {
  it('writes one static job per entry, with its targets, labels and the scrape interval', () => {
    const cfg = JSON.parse(
      prometheusConfig(
        [
          { name: 'keeper', targets: ['127.0.0.1:1', '127.0.0.1:2'], labels: { stolon_cluster: 'c' } },
          { name: 'proxy', targets: ['127.0.0.1:3'] },
        ],
        1,
      ),
    ) as { global: Record<string, string>; scrape_configs: { job_name: string; metrics_path: string; static_configs: { targets: string[]; labels?: Record<string, string> }[] }[] };
    expect(cfg.global).toEqual({ scrape_interval: '1s', evaluation_interval: '1s', scrape_timeout: '1s' });
    expect(cfg.scrape_configs).toEqual([
      { job_name: 'keeper', metrics_path: '/metrics', static_configs: [{ targets: ['127.0.0.1:1', '127.0.0.1:2'], labels: { stolon_cluster: 'c' } }] },
      { job_name: 'proxy', metrics_path: '/metrics', static_configs: [{ targets: ['127.0.0.1:3'] }] },
    ]);
  });

  it('lists the rule files when there are any', () => {
    expect(JSON.parse(prometheusConfig([], 2, ['/x/rules.yml'])).rule_files).toEqual(['/x/rules.yml']);
    expect('rule_files' in JSON.parse(prometheusConfig([], 2))).toBe(false);
  });

  it('a missing binary fails naming the package to install', async () => {
    await expect(startPrometheus({ jobs: [], bin: '/nonexistent/prometheus' })).rejects.toThrow(/apt-get install -y prometheus/);
  });
});
