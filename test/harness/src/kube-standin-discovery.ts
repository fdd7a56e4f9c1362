/**
 * Discovery documents of the Kubernetes API server stand-in (`kube-apiserver-standin.ts`): what a
 * client such as kubectl reads before its first request for a resource — `/version`, the legacy
 * discovery documents (`/api`, `/api/v1`, `/apis`, `/apis/coordination.k8s.io[/v1]`) and an OpenAPI
 * v3 index (`/openapi/v3`) whose per-group documents declare only the `PATCH` operations with
 * their `fieldValidation` parameter, which is what kubectl looks for to leave validation to the
 * server (`kubectl create/replace` with the default `--validate=strict`). No schemas, no aggregated
 * discovery (`apidiscovery.k8s.io/v2`: clients fall back to the legacy documents when the answer
 * is plain `application/json`), no `/openapi/v2`.
 * @see the Kubernetes documentation, "The Kubernetes API" (discovery, OpenAPI v3)
 */

/** One served resource type, as the stand-in's discovery lists it. */
interface DiscoveredResource {
  readonly name: string;
  readonly singularName: string;
  readonly namespaced: boolean;
  readonly kind: string;
  readonly shortNames: readonly string[];
}

/** The stand-in's resources by group version (`v1` is the core group). */
const GROUP_VERSIONS: Readonly<Record<string, readonly DiscoveredResource[]>> = {
  v1: [
    { name: 'configmaps', singularName: 'configmap', namespaced: true, kind: 'ConfigMap', shortNames: ['cm'] },
    { name: 'namespaces', singularName: 'namespace', namespaced: false, kind: 'Namespace', shortNames: ['ns'] },
    { name: 'pods', singularName: 'pod', namespaced: true, kind: 'Pod', shortNames: ['po'] },
  ],
  'coordination.k8s.io/v1': [{ name: 'leases', singularName: 'lease', namespaced: true, kind: 'Lease', shortNames: [] }],
};

/** The Kubernetes version the stand-in says it is (`/version`); its semantics follow current servers. */
const STANDIN_KUBERNETES_VERSION = { major: '1', minor: '31', gitVersion: 'v1.31.0' } as const;

/** Verbs of every served resource (`deletecollection` is not implemented). */
const VERBS = ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'];

function resourceList(groupVersion: string, resources: readonly DiscoveredResource[]): Record<string, unknown> {
  return {
    kind: 'APIResourceList',
    apiVersion: 'v1',
    groupVersion,
    resources: resources.map((r) => ({
      name: r.name,
      singularName: r.singularName,
      namespaced: r.namespaced,
      kind: r.kind,
      verbs: VERBS,
      ...(r.shortNames.length > 0 ? { shortNames: r.shortNames } : {}),
    })),
  };
}

const COORDINATION_GROUP = {
  name: 'coordination.k8s.io',
  versions: [{ groupVersion: 'coordination.k8s.io/v1', version: 'v1' }],
  preferredVersion: { groupVersion: 'coordination.k8s.io/v1', version: 'v1' },
};

/** A minimal OpenAPI v3 document for one group version: each object path with its PATCH operation. */
function openApiV3(groupVersion: string): Record<string, unknown> {
  const [group, version] = groupVersion.includes('/') ? groupVersion.split('/') : ['', groupVersion];
  const root = group === '' ? `/api/${version ?? ''}` : `/apis/${groupVersion}`;
  const paths: Record<string, unknown> = {};
  for (const r of GROUP_VERSIONS[groupVersion] ?? []) {
    const path = r.namespaced ? `${root}/namespaces/{namespace}/${r.name}/{name}` : `${root}/${r.name}/{name}`;
    paths[path] = {
      patch: {
        operationId: `patch${r.namespaced ? 'Namespaced' : ''}${r.kind}`,
        'x-kubernetes-action': 'patch',
        'x-kubernetes-group-version-kind': { group, version, kind: r.kind },
        parameters: ['dryRun', 'fieldManager', 'fieldValidation', 'force'].map((name) => ({
          name,
          in: 'query',
          schema: { type: name === 'force' ? 'boolean' : 'string', uniqueItems: true },
        })),
        responses: { '200': { description: 'OK' } },
      },
    };
  }
  return { openapi: '3.0.0', info: { title: 'Kubernetes', version: STANDIN_KUBERNETES_VERSION.gitVersion }, paths };
}

/**
 * The discovery answer for `GET path`, or undefined when `path` is not a discovery path.
 * @param hostPort the stand-in's `host:port` (for `/api`'s serverAddressByClientCIDRs)
 */
export function discoveryDocument(path: string, hostPort: string): Record<string, unknown> | undefined {
  switch (path) {
    case '/version':
      return {
        ...STANDIN_KUBERNETES_VERSION,
        gitCommit: '0000000000000000000000000000000000000000',
        gitTreeState: 'clean',
        buildDate: '2024-08-13T07:28:49Z',
        goVersion: 'go1.22.5',
        compiler: 'gc',
        platform: 'linux/amd64',
      };
    case '/api':
      return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: hostPort }] };
    case '/apis':
      return { kind: 'APIGroupList', apiVersion: 'v1', groups: [COORDINATION_GROUP] };
    case '/apis/coordination.k8s.io':
      return { kind: 'APIGroup', apiVersion: 'v1', ...COORDINATION_GROUP };
    case '/api/v1':
      return resourceList('v1', GROUP_VERSIONS['v1'] ?? []);
    case '/apis/coordination.k8s.io/v1':
      return resourceList('coordination.k8s.io/v1', GROUP_VERSIONS['coordination.k8s.io/v1'] ?? []);
    case '/openapi/v3':
      return {
        paths: {
          'api/v1': { serverRelativeURL: '/openapi/v3/api/v1?hash=standin-v1' },
          'apis/coordination.k8s.io/v1': { serverRelativeURL: '/openapi/v3/apis/coordination.k8s.io/v1?hash=standin-coordination-v1' },
        },
      };
    case '/openapi/v3/api/v1':
      return openApiV3('v1');
    case '/openapi/v3/apis/coordination.k8s.io/v1':
      return openApiV3('coordination.k8s.io/v1');
    default:
      return undefined;
  }
}
