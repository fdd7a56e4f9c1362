/**
 * Labels on one pod of the Kubernetes API, for a program that keeps a label of its own pod current
 * (the keeper's `stolon-ts/role`). It needs RBAC `patch` on that pod only: a JSON merge patch
 * (`PATCH /api/v1/namespaces/<ns>/pods/<name>`, `application/merge-patch+json`) sets or removes
 * the labels without reading the pod first. Credentials and the API server come from
 * `@kubernetes/client-node`'s `KubeConfig` ({@link resolveKubeConfig}: `--kubeconfig`,
 * `KUBECONFIG`, `~/.kube/config`, else the pod's service account), the request from the store
 * backend's bounded HTTP client.
 */
import { KubeHttp, resolveKubeConfig, type KubeConfigOptions } from './kube-client.js';

/** Options of {@link PodLabels}. */
export interface PodLabelsOptions extends KubeConfigOptions {
  /** The pod's name (the downward API's `metadata.name`). */
  readonly pod: string;
  /** Bound of each request, in ms (credentials included). */
  readonly timeoutMs: number;
}

/** Sets labels on one pod. */
export class PodLabels {
  private readonly http: KubeHttp;
  /** The pod's namespace, as resolved (`--kube-namespace`, else the service account's, else the context's). */
  readonly namespace: string;
  readonly pod: string;
  private readonly timeoutMs: number;

  /**
   * Resolves the client configuration now; sends nothing.
   * @throws ConfigError naming `kubeconfig`, `kube-context` or `kube-namespace` when no usable
   *   configuration is found (e.g. outside a pod, or a pod with no service account token mounted)
   */
  constructor(opts: PodLabelsOptions) {
    const resolved = resolveKubeConfig(opts);
    this.http = new KubeHttp(resolved.kubeConfig);
    this.namespace = resolved.namespace;
    this.pod = opts.pod;
    this.timeoutMs = opts.timeoutMs;
  }

  /**
   * Sets each label of `labels` to its value, removes those given `null`; other labels are kept.
   * @throws KubeRequestError `timeout` (no answer within the timeout), `network`, or `http` (e.g.
   *   403 without RBAC `patch` on the pod, 404 for a wrong pod name or namespace)
   */
  async set(labels: Readonly<Record<string, string | null>>): Promise<void> {
    await this.http.request('PATCH', `/api/v1/namespaces/${encodeURIComponent(this.namespace)}/pods/${encodeURIComponent(this.pod)}`, {
      body: { metadata: { labels } },
      contentType: 'application/merge-patch+json',
      deadline: performance.now() + this.timeoutMs,
    });
  }
}
