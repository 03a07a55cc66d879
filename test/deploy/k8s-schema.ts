import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import ts from 'typescript';
import type { K8sObject } from './k8s-render.ts';
import { REPO } from './tools.ts';

/**
 * Strict schema check for rendered manifests.
 *
 * kubernetes-models' own `validate()` checks types and required fields but lets unknown keys through,
 * so a typo such as `readinesProbe` would silently drop the probe. The API server (and `kubectl apply
 * --validate=strict`) rejects such keys; we cannot reach a server here, so the known field set of every
 * object comes from the TypeScript interfaces kubernetes-models ships (`.d.ts`, generated from the
 * Kubernetes OpenAPI document): the TypeScript checker resolves each nested property's type, and any key
 * that is not a property of its type (and not under a map type such as `labels`) is reported.
 *
 * Custom resources have no such interfaces; each gets a hand-kept shape below (known keys, and where a
 * field embeds a core type, that type's strict check).
 */

export interface SchemaProblem {
  object: string;
  path: string;
  message: string;
}

/** A CRD shape: `true` accepts any value; a string names a core interface (`X[]`: an array of them). */
type Shape = true | string | { [key: string]: Shape };

const CNPG_CLUSTER: Shape = {
  apiVersion: true,
  kind: true,
  metadata: 'IObjectMeta',
  spec: {
    // CloudNativePG 1.25 ClusterSpec, top-level keys (api/v1/cluster_types.go), hand-kept.
    affinity: {
      enablePodAntiAffinity: true,
      topologyKey: true,
      nodeSelector: true,
      nodeAffinity: 'INodeAffinity',
      tolerations: 'IToleration[]',
      podAntiAffinityType: true,
      additionalPodAntiAffinity: 'IPodAntiAffinity',
      additionalPodAffinity: 'IPodAffinity',
    },
    backup: {
      // BackupConfiguration and the in-tree BarmanObjectStoreConfiguration (CloudNativePG 1.25).
      retentionPolicy: true,
      target: true,
      volumeSnapshot: true,
      barmanObjectStore: {
        destinationPath: true,
        endpointURL: true,
        endpointCA: true,
        serverName: true,
        s3Credentials: {
          accessKeyId: { name: true, key: true },
          secretAccessKey: { name: true, key: true },
          region: { name: true, key: true },
          sessionToken: { name: true, key: true },
          inheritFromIAMRole: true,
        },
        azureCredentials: true,
        googleCredentials: true,
        wal: {
          compression: true,
          encryption: true,
          maxParallel: true,
          archiveAdditionalCommandArgs: true,
          restoreAdditionalCommandArgs: true,
        },
        data: {
          compression: true,
          encryption: true,
          jobs: true,
          immediateCheckpoint: true,
          additionalCommandArgs: true,
        },
        tags: true,
        historyTags: true,
      },
    },
    bootstrap: true,
    certificates: true,
    description: true,
    enablePDB: true,
    enableSuperuserAccess: true,
    env: 'IEnvVar[]',
    envFrom: 'IEnvFromSource[]',
    ephemeralVolumeSource: true,
    ephemeralVolumesSizeLimit: true,
    externalClusters: true,
    failoverDelay: true,
    imageCatalogRef: true,
    imageName: true,
    imagePullPolicy: true,
    imagePullSecrets: true,
    inheritedMetadata: true,
    instances: true,
    livenessProbeTimeout: true,
    logLevel: true,
    managed: true,
    maxSyncReplicas: true,
    minSyncReplicas: true,
    monitoring: {
      disableDefaultQueries: true,
      customQueriesConfigMap: true,
      customQueriesSecret: true,
      enablePodMonitor: true,
      tls: true,
      podMonitorMetricRelabelings: true,
      podMonitorRelabelings: true,
    },
    nodeMaintenanceWindow: true,
    plugins: true,
    podSecurityContext: 'IPodSecurityContext',
    postgresGID: true,
    postgresUID: true,
    postgresql: {
      parameters: true,
      synchronous: {
        method: true,
        number: true,
        maxStandbyNamesFromCluster: true,
        standbyNamesPre: true,
        standbyNamesPost: true,
        dataDurability: true,
        failoverQuorum: true,
      },
      pg_hba: true,
      pg_ident: true,
      shared_preload_libraries: true,
      ldap: true,
      promotionTimeout: true,
      enableAlterSystem: true,
      syncReplicaElectionConstraint: true,
      extensions: true,
    },
    primaryUpdateMethod: true,
    primaryUpdateStrategy: true,
    priorityClassName: true,
    probes: true,
    projectedVolumeTemplate: true,
    replica: true,
    replicationSlots: true,
    resources: 'IResourceRequirements',
    schedulerName: true,
    seccompProfile: 'ISeccompProfile',
    securityContext: 'ISecurityContext',
    serviceAccountTemplate: true,
    smartShutdownTimeout: true,
    startDelay: true,
    stopDelay: true,
    storage: {
      storageClass: true,
      size: true,
      resizeInUseVolumes: true,
      pvcTemplate: 'IPersistentVolumeClaimSpec',
    },
    superuserSecret: true,
    switchoverDelay: true,
    tablespaces: true,
    topologySpreadConstraints: 'ITopologySpreadConstraint[]',
    walStorage: {
      storageClass: true,
      size: true,
      resizeInUseVolumes: true,
      pvcTemplate: 'IPersistentVolumeClaimSpec',
    },
  },
};

/** CloudNativePG 1.25 ScheduledBackup (api/v1/scheduledbackup_types.go), hand-kept. */
const CNPG_SCHEDULED_BACKUP: Shape = {
  apiVersion: true,
  kind: true,
  metadata: 'IObjectMeta',
  spec: {
    suspend: true,
    immediate: true,
    schedule: true,
    cluster: { name: true },
    backupOwnerReference: true,
    target: true,
    method: true,
    online: true,
    onlineConfiguration: true,
    pluginConfiguration: true,
  },
};

/** prometheus-operator ServiceMonitor (monitoring.coreos.com/v1), hand-kept. */
const SERVICE_MONITOR: Shape = {
  apiVersion: true,
  kind: true,
  metadata: 'IObjectMeta',
  spec: {
    attachMetadata: true,
    bodySizeLimit: true,
    endpoints: true, // a list; checked item by item below
    fallbackScrapeProtocol: true,
    jobLabel: true,
    keepDroppedTargets: true,
    labelLimit: true,
    labelNameLengthLimit: true,
    labelValueLengthLimit: true,
    namespaceSelector: { any: true, matchNames: true },
    podTargetLabels: true,
    sampleLimit: true,
    scrapeClass: true,
    scrapeProtocols: true,
    selector: 'ILabelSelector',
    selectorMechanism: true,
    targetLabels: true,
    targetLimit: true,
  },
};
const SERVICE_MONITOR_ENDPOINT = new Set([
  'authorization',
  'basicAuth',
  'bearerTokenFile',
  'bearerTokenSecret',
  'enableHttp2',
  'filterRunning',
  'followRedirects',
  'honorLabels',
  'honorTimestamps',
  'interval',
  'metricRelabelings',
  'noProxy',
  'oauth2',
  'params',
  'path',
  'port',
  'proxyConnectHeader',
  'proxyFromEnvironment',
  'proxyUrl',
  'relabelings',
  'scheme',
  'scrapeTimeout',
  'targetPort',
  'tlsConfig',
  'trackTimestampsStaleness',
]);

/** prometheus-operator PrometheusRule: groups of alerting and recording rules, hand-kept. */
const PROMETHEUS_RULE: Shape = {
  apiVersion: true,
  kind: true,
  metadata: 'IObjectMeta',
  spec: { groups: true }, // checked group by group and rule by rule below
};
const RULE_GROUP = new Set([
  'name',
  'interval',
  'rules',
  'limit',
  'partial_response_strategy',
  'query_offset',
  'labels',
]);
const RULE = new Set(['alert', 'record', 'expr', 'for', 'keep_firing_for', 'labels', 'annotations']);

/** cert-manager 1.x Certificate (cert-manager.io/v1, pkg/apis/certmanager/v1/types_certificate.go), hand-kept. */
const CERTIFICATE: Shape = {
  apiVersion: true,
  kind: true,
  metadata: 'IObjectMeta',
  spec: {
    subject: true,
    literalSubject: true,
    commonName: true,
    duration: true,
    renewBefore: true,
    renewBeforePercentage: true,
    dnsNames: true,
    ipAddresses: true,
    uris: true,
    otherNames: true,
    emailAddresses: true,
    secretName: true,
    secretTemplate: { annotations: true, labels: true },
    keystores: true,
    issuerRef: { name: true, kind: true, group: true },
    isCA: true,
    usages: true,
    privateKey: { rotationPolicy: true, encoding: true, algorithm: true, size: true },
    signatureAlgorithm: true,
    encodeUsagesInRequest: true,
    revisionHistoryLimit: true,
    additionalOutputFormats: true,
    nameConstraints: true,
  },
};

/** cert-manager 1.x Issuer (types_issuer.go): only the issuer kinds we use are spelled out. */
const ISSUER: Shape = {
  apiVersion: true,
  kind: true,
  metadata: 'IObjectMeta',
  spec: {
    selfSigned: { crlDistributionPoints: true },
    ca: { secretName: true, crlDistributionPoints: true, ocspServers: true, issuingCertificateURLs: true },
    acme: true,
    vault: true,
    venafi: true,
  },
};

/**
 * Custom resources checked against models generated from their project's own CRD schemas (the
 * `@kubernetes-models/*` packages): the generated validator (types, required fields, enums) and, like the
 * built-in kinds, the TypeScript interface for unknown fields. Preferred to a hand-kept shape.
 */
const CRD_MODELS: Record<string, string> = {
  // From prometheus-operator's CRDs (v0.65); PodMonitor has changed only by additions since.
  'monitoring.coreos.com/v1/PodMonitor': '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1',
};

/** Custom resources we ship, by `apiVersion/kind`. */
export const CRD_SHAPES: Record<string, Shape> = {
  'postgresql.cnpg.io/v1/Cluster': CNPG_CLUSTER,
  'postgresql.cnpg.io/v1/ScheduledBackup': CNPG_SCHEDULED_BACKUP,
  'monitoring.coreos.com/v1/ServiceMonitor': SERVICE_MONITOR,
  'monitoring.coreos.com/v1/PrometheusRule': PROMETHEUS_RULE,
  'cert-manager.io/v1/Certificate': CERTIFICATE,
  'cert-manager.io/v1/Issuer': ISSUER,
};

/** Core interfaces the CRD shapes refer to, and the module that declares each. */
const CORE_TYPES: Record<string, string> = {
  IObjectMeta: '@kubernetes-models/apimachinery/apis/meta/v1/ObjectMeta',
  ILabelSelector: '@kubernetes-models/apimachinery/apis/meta/v1/LabelSelector',
  INodeAffinity: 'kubernetes-models/v1/NodeAffinity',
  IToleration: 'kubernetes-models/v1/Toleration',
  IPodAntiAffinity: 'kubernetes-models/v1/PodAntiAffinity',
  IPodAffinity: 'kubernetes-models/v1/PodAffinity',
  IEnvVar: 'kubernetes-models/v1/EnvVar',
  IEnvFromSource: 'kubernetes-models/v1/EnvFromSource',
  IPodSecurityContext: 'kubernetes-models/v1/PodSecurityContext',
  IResourceRequirements: 'kubernetes-models/v1/ResourceRequirements',
  ISeccompProfile: 'kubernetes-models/v1/SeccompProfile',
  ISecurityContext: 'kubernetes-models/v1/SecurityContext',
  IPersistentVolumeClaimSpec: 'kubernetes-models/v1/PersistentVolumeClaimSpec',
  ITopologySpreadConstraint: 'kubernetes-models/v1/TopologySpreadConstraint',
};

const MODELS = join(REPO, 'node_modules/kubernetes-models');
const kindKey = (o: { apiVersion: string; kind: string }) => `${o.apiVersion}/${o.kind}`;
/** kubernetes-models lays its files out as `<group>/<version>/<Kind>` (core: `v1/<Kind>`). */
const builtinModule = (o: { apiVersion: string; kind: string }) =>
  `kubernetes-models/${o.apiVersion}/${o.kind}`;
const isBuiltin = (o: { apiVersion: string; kind: string }) =>
  typeof o.apiVersion === 'string' &&
  typeof o.kind === 'string' &&
  /^[A-Za-z0-9]+$/.test(o.kind) &&
  existsSync(join(MODELS, o.apiVersion, `${o.kind}.d.ts`));
/** The folder module of a kind's generated model: kubernetes-models' for built-ins, else CRD_MODELS'. */
const modelModule = (o: { apiVersion: string; kind: string }): string | undefined =>
  isBuiltin(o) ? `kubernetes-models/${o.apiVersion}` : CRD_MODELS[kindKey(o)];

const require = createRequire(import.meta.url);

export class StrictSchema {
  private constructor(
    private readonly checker: ts.TypeChecker,
    private readonly types: Map<string, ts.Type>,
  ) {}

  /** Loads the interfaces for every built-in kind in `objects` plus the core types CRDs embed. */
  static load(objects: Array<{ apiVersion: string; kind: string }>): StrictSchema {
    const imports = new Map<string, string>(Object.entries(CORE_TYPES).map(([name, mod]) => [name, mod]));
    for (const o of objects) {
      if (isBuiltin(o)) imports.set(kindKey(o), builtinModule(o));
      else if (CRD_MODELS[kindKey(o)]) imports.set(kindKey(o), `${CRD_MODELS[kindKey(o)]}/${o.kind}`);
    }
    const aliases = [...imports.keys()];
    const source = aliases
      .map((key, i) => {
        const name = key.startsWith('I') && !key.includes('/') ? key : `I${key.split('/').pop()}`;
        return `import type { ${name} as T${i} } from '${imports.get(key)}';\nexport type X${i} = T${i};`;
      })
      .join('\n');

    const file = join(REPO, '__k8s_types__.ts');
    const options: ts.CompilerOptions = {
      module: ts.ModuleKind.CommonJS,
      moduleResolution: ts.ModuleResolutionKind.Node10,
      target: ts.ScriptTarget.ES2020,
      lib: ['lib.es2020.d.ts'],
      types: [],
      noEmit: true,
      skipLibCheck: true,
    };
    const host = ts.createCompilerHost(options);
    const getSourceFile = host.getSourceFile.bind(host);
    const fileExists = host.fileExists.bind(host);
    host.getSourceFile = (name, lang, ...rest) =>
      name === file ? ts.createSourceFile(name, source, lang) : getSourceFile(name, lang, ...rest);
    host.fileExists = (name) => name === file || fileExists(name);
    const program = ts.createProgram([file], options, host);
    const checker = program.getTypeChecker();
    const moduleSymbol = checker.getSymbolAtLocation(program.getSourceFile(file)!)!;
    const types = new Map<string, ts.Type>();
    for (const sym of checker.getExportsOfModule(moduleSymbol)) {
      const key = aliases[Number(sym.name.slice(1))]!;
      const type = checker.getDeclaredTypeOfSymbol(sym);
      if (checker.getPropertiesOfType(type).length === 0)
        throw new Error(`could not load the type of ${key}`);
      types.set(key, type);
    }
    return new StrictSchema(checker, types);
  }

  /** Every problem with one object: kubernetes-models validation, then unknown fields. */
  validate(o: K8sObject): SchemaProblem[] {
    const object = `${o.kind}/${o.metadata?.name}`;
    const problems: SchemaProblem[] = [];
    const report = (path: string, message: string) => problems.push({ object, path, message });

    if (modelModule(o)) {
      this.modelValidate(o, modelModule(o)!, report);
      this.walk(o, this.types.get(kindKey(o))!, '', report);
    } else if (CRD_SHAPES[kindKey(o)]) {
      this.walkShape(o, CRD_SHAPES[kindKey(o)]!, '', report);
      if (o.kind === 'PrometheusRule') {
        for (const [g, group] of (o.spec?.groups ?? []).entries()) {
          for (const key of Object.keys(group)) {
            if (!RULE_GROUP.has(key)) report(`/spec/groups/${g}/${key}`, `unknown field "${key}"`);
          }
          for (const [r, rule] of (group.rules ?? []).entries()) {
            for (const key of Object.keys(rule)) {
              if (!RULE.has(key)) report(`/spec/groups/${g}/rules/${r}/${key}`, `unknown field "${key}"`);
            }
          }
        }
      }
      if (o.kind === 'ServiceMonitor') {
        for (const [i, e] of (o.spec?.endpoints ?? []).entries()) {
          for (const key of Object.keys(e)) {
            if (!SERVICE_MONITOR_ENDPOINT.has(key))
              report(`/spec/endpoints/${i}/${key}`, `unknown field "${key}"`);
          }
        }
      }
    } else {
      report('', `unknown kind ${kindKey(o)}: no schema (add a shape to CRD_SHAPES if it is a CRD)`);
    }
    return problems;
  }

  /** The generated validator (kubernetes-models, or a CRD's model package): types, formats, required fields. */
  private modelValidate(o: K8sObject, module: string, report: (path: string, message: string) => void) {
    // biome-ignore lint/suspicious/noExplicitAny: generated model classes, looked up by kind
    const mod = require(module) as Record<string, any>;
    const Model = mod[o.kind];
    if (!Model) {
      report('', `kubernetes-models has no class for ${kindKey(o)}`);
      return;
    }
    const copy = structuredClone(o);
    // kustomize wraps long base64 Secret data at 76 columns; the API server's decoder (Go's base64)
    // ignores those newlines, kubernetes-models' "byte" format does not.
    if (o.kind === 'Secret' && copy.data) {
      for (const k of Object.keys(copy.data)) copy.data[k] = String(copy.data[k]).replace(/\s+/g, '');
    }
    try {
      new Model(copy).validate();
    } catch (err) {
      report('', `kubernetes-models: ${(err as Error).message}`);
    }
  }

  private walk(
    value: unknown,
    type: ts.Type,
    path: string,
    report: (path: string, message: string) => void,
  ): void {
    if (value === null || value === undefined || typeof value !== 'object') return;
    const c = this.checker;
    type = c.getNonNullableType(type);
    if (type.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown)) return;
    if (type.isUnion()) {
      // Unions in these models are scalar alternatives (IntOrString, Quantity) plus at most one object.
      const objects = type.types.filter((t) => t.flags & ts.TypeFlags.Object);
      if (objects.length !== 1) return;
      type = objects[0]!;
    }
    if (Array.isArray(value)) {
      const item = c.getIndexTypeOfType(type, ts.IndexKind.Number);
      if (!item) report(path, 'is a list where the schema expects an object');
      else for (const [i, v] of value.entries()) this.walk(v, item, `${path}/${i}`, report);
      return;
    }
    const mapOf = c.getIndexTypeOfType(type, ts.IndexKind.String);
    for (const [key, v] of Object.entries(value)) {
      const prop = type.getProperty(key);
      if (prop) this.walk(v, c.getTypeOfSymbol(prop), `${path}/${key}`, report);
      else if (mapOf) this.walk(v, mapOf, `${path}/${key}`, report);
      else report(`${path}/${key}`, `unknown field "${key}" in ${c.typeToString(type)}`);
    }
  }

  private walkShape(
    value: unknown,
    shape: Shape,
    path: string,
    report: (path: string, message: string) => void,
  ) {
    if (shape === true || value === null || value === undefined) return;
    if (typeof shape === 'string') {
      const isList = shape.endsWith('[]');
      const type = this.types.get(isList ? shape.slice(0, -2) : shape)!;
      if (!isList) this.walk(value, type, path, report);
      else if (!Array.isArray(value)) report(path, 'must be a list');
      else for (const [i, v] of value.entries()) this.walk(v, type, `${path}/${i}`, report);
      return;
    }
    if (typeof value !== 'object' || Array.isArray(value)) {
      report(path, 'must be an object');
      return;
    }
    for (const [key, v] of Object.entries(value)) {
      if (key in shape) this.walkShape(v, shape[key]!, `${path}/${key}`, report);
      else report(`${path}/${key}`, `unknown field "${key}"`);
    }
  }
}
