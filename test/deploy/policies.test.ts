import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { CLUSTER_POLICIES, expectedSecrets, plainEnv, scrapeJobs } from './k8s-cluster-policies.ts';
import { imagePinned, type Policy, podOwners, POLICIES as WORKLOAD_POLICIES } from './k8s-policies.ts';
import { type K8sObject, OVERLAYS, renderOverlay } from './k8s-render.ts';
import { needTool, REPO } from './tools.ts';

const skip = needTool('kubectl', ['version', '--client']);
const POLICIES: Record<string, Policy> = { ...WORKLOAD_POLICIES, ...CLUSTER_POLICIES };

// biome-ignore lint/suspicious/noExplicitAny: manifest fragments
type Any = any;

const byName = (objects: K8sObject[], kind: string, name: string): Any => {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(o, `${kind}/${name} not rendered`);
  return o;
};
const apiContainer = (objects: K8sObject[]) =>
  byName(objects, 'Deployment', 'intake-api').spec.template.spec.containers[0];
/** Removes one env entry of the API container. */
const dropApiEnv = (objects: K8sObject[], name: string) => {
  const env = apiContainer(objects).env;
  env.splice(
    env.findIndex((e: Any) => e.name === name),
    1,
  );
};

/** One broken manifest per policy: each policy must report what was broken. */
const BREAKAGES: Array<{ policy: string; what: string; breakIt: (o: K8sObject[]) => void; expect: RegExp }> =
  [
    {
      policy: 'probesPresent',
      what: 'readiness probe removed',
      breakIt: (o) => delete apiContainer(o).readinessProbe,
      expect: /Deployment\/intake-api container api: no readinessProbe/,
    },
    {
      policy: 'resourcesSet',
      what: 'memory limit removed',
      breakIt: (o) => delete apiContainer(o).resources.limits.memory,
      expect: /intake-api container api: no limits.memory/,
    },
    {
      policy: 'restrictedSecurity',
      what: 'writable root filesystem',
      breakIt: (o) => {
        apiContainer(o).securityContext.readOnlyRootFilesystem = false;
      },
      expect: /intake-api container api: readOnlyRootFilesystem is not true/,
    },
    {
      policy: 'restrictedSecurity',
      what: 'runAsNonRoot dropped from container and pod',
      breakIt: (o) => {
        delete apiContainer(o).securityContext.runAsNonRoot;
        delete byName(o, 'Deployment', 'intake-api').spec.template.spec.securityContext.runAsNonRoot;
      },
      expect: /intake-api container api: runAsNonRoot is not true/,
    },
    {
      policy: 'pdbPerWorkload',
      what: 'PDB of go-app deleted',
      breakIt: (o) => o.splice(o.indexOf(byName(o, 'PodDisruptionBudget', 'go-app')), 1),
      expect: /Deployment\/go-app: no PodDisruptionBudget/,
    },
    {
      policy: 'pdbPerWorkload',
      what: 'PDB with maxUnavailable 2',
      breakIt: (o) => {
        byName(o, 'PodDisruptionBudget', 'nats').spec.maxUnavailable = 2;
      },
      expect: /StatefulSet\/nats: PodDisruptionBudget\/nats has maxUnavailable 2/,
    },
    {
      policy: 'rollingZeroUnavailable',
      what: 'maxUnavailable 25%',
      breakIt: (o) => {
        byName(o, 'Deployment', 'intake-worker').spec.strategy.rollingUpdate.maxUnavailable = '25%';
      },
      expect: /Deployment\/intake-worker: maxUnavailable is 25%, want 0/,
    },
    {
      policy: 'graceArithmetic',
      what: 'grace period shorter than preStop + drain',
      breakIt: (o) => {
        byName(o, 'Deployment', 'intake-api').spec.template.spec.terminationGracePeriodSeconds = 30;
      },
      expect: /intake-api container api: preStop 10s \+ drain 25s >= terminationGracePeriodSeconds 30/,
    },
    {
      policy: 'graceArithmetic',
      what: 'no preStop on an Ingress backend',
      breakIt: (o) => delete byName(o, 'Deployment', 'go-app').spec.template.spec.containers[0].lifecycle,
      expect: /go-app container go-app: serves an Ingress but preStop delays SIGTERM only 0s/,
    },
    {
      policy: 'imagesPinned',
      what: 'latest tag',
      breakIt: (o) => {
        byName(o, 'StatefulSet', 'nats').spec.template.spec.containers[0].image = 'nats:latest';
      },
      expect: /StatefulSet\/nats container nats: image "nats:latest" is not pinned/,
    },
    {
      policy: 'networkPolicyPerWorkload',
      what: 'NetworkPolicy of the worker deleted',
      breakIt: (o) => o.splice(o.indexOf(byName(o, 'NetworkPolicy', 'intake-worker')), 1),
      expect: /Deployment\/intake-worker: no NetworkPolicy selects its pods/,
    },
    {
      policy: 'networkPolicyPerWorkload',
      what: 'default deny deleted',
      breakIt: (o) => o.splice(o.indexOf(byName(o, 'NetworkPolicy', 'default-deny-all')), 1),
      expect: /no default-deny NetworkPolicy/,
    },
    {
      policy: 'networkPolicyPeers',
      what: "the pod watcher's metrics port open to every source",
      breakIt: (o) => {
        delete byName(o, 'NetworkPolicy', 'pod-watcher').spec.ingress[0].from;
      },
      expect: /NetworkPolicy\/pod-watcher: ingress rule 0 admits every source \(no from\)/,
    },
    {
      policy: 'topologySpread',
      what: 'zone spread removed',
      breakIt: (o) => {
        const spec = byName(o, 'Deployment', 'go-app').spec.template.spec;
        spec.topologySpreadConstraints = spec.topologySpreadConstraints.filter(
          (c: Any) => c.topologyKey !== 'topology.kubernetes.io/zone',
        );
      },
      expect: /Deployment\/go-app: no topologySpreadConstraint on topology.kubernetes.io\/zone/,
    },
    {
      policy: 'clusterScopedNames',
      what: 'a ClusterRole named without the namespace',
      breakIt: (o) => {
        byName(o, 'ClusterRole', 'intake-pod-watcher').metadata.name = 'pod-watcher';
      },
      expect: /ClusterRole\/pod-watcher: a cluster-scoped name must start with the namespace \("intake-"\)/,
    },
    {
      policy: 'clusterScopedNames',
      what: 'a binding whose roleRef missed the rename',
      breakIt: (o) => {
        byName(o, 'ClusterRoleBinding', 'intake-pod-watcher').roleRef.name = 'intake-other';
      },
      expect: /roleRef names ClusterRole intake-other, which is not rendered/,
    },
    {
      policy: 'connectionBudget',
      what: 'the API pool left at the default under the prod HPA ceiling',
      breakIt: (o) => dropApiEnv(o, 'INTAKE_DB_POOL_SIZE'),
      expect:
        /role intake_api: intake-api 30 pods × pool 10 = 300 connections, not under its connectionLimit 150/,
    },
    {
      policy: 'databaseBackups',
      what: 'ScheduledBackup deleted',
      breakIt: (o) => {
        o.splice(o.indexOf(byName(o, 'ScheduledBackup', 'intake-pg-daily')), 1);
      },
      expect: /Cluster\/intake-pg: no ScheduledBackup takes base backups of it/,
    },
    {
      policy: 'databaseScraped',
      what: "the PodMonitor selects the poolers' label instead of the instances'",
      breakIt: (o) => {
        byName(o, 'PodMonitor', 'intake-pg').spec.selector.matchLabels['cnpg.io/podRole'] = 'pooler';
      },
      expect: /Cluster\/intake-pg: 0 PodMonitors scrape its instances on port metrics, not 1/,
    },
    {
      policy: 'databaseScraped',
      what: 'the deprecated operator-made PodMonitor switched back on',
      breakIt: (o) => {
        byName(o, 'Cluster', 'intake-pg').spec.monitoring = { enablePodMonitor: true };
      },
      expect: /Cluster\/intake-pg: monitoring.enablePodMonitor is deprecated/,
    },
    {
      policy: 'scrapedJobsAlerted',
      what: 'the absent() alert of the NATS exporter removed',
      breakIt: (o) => {
        for (const g of byName(o, 'PrometheusRule', 'intake').spec.groups)
          g.rules = g.rules.filter((r: Any) => r.alert !== 'NatsExporterTargetsAbsent');
      },
      expect: /job nats-metrics: no absent\(up\) alert/,
    },
    {
      policy: 'databaseTls',
      what: 'the worker connecting without verifying the server',
      breakIt: (o) => {
        const c = byName(o, 'Deployment', 'intake-worker').spec.template.spec.containers[0];
        const url = c.env.find((e: Any) => e.name === 'DATABASE_URL');
        url.value = url.value.replace('sslmode=verify-full', 'sslmode=require');
      },
      expect:
        /Deployment\/intake-worker container worker: DATABASE_URL has sslmode=require, want verify-full/,
    },
    {
      policy: 'natsClients',
      what: "the migration Job using the API's inbox prefix",
      breakIt: (o) => {
        const c = byName(o, 'Job', 'intake-migrate').spec.template.spec.containers[0];
        c.env.find((e: Any) => e.name === 'NATS_INBOX_PREFIX').value = '_INBOX.intake-api';
      },
      expect:
        /Job\/intake-migrate container migrate: NATS_INBOX_PREFIX is _INBOX.intake-api, want _INBOX.intake-provision/,
    },
    {
      policy: 'adminRoutesInternal',
      what: 'an Ingress path to the admin Service',
      breakIt: (o) => {
        byName(o, 'Ingress', 'intake-api').spec.rules[0].http.paths.push({
          path: '/admin',
          pathType: 'Prefix',
          backend: { service: { name: 'intake-api-admin', port: { name: 'admin' } } },
        });
      },
      expect: /Deployment\/intake-api: Ingress via Service\/intake-api-admin reaches the admin port 8082/,
    },
    {
      policy: 'adminRoutesInternal',
      what: 'the admin port setting removed',
      breakIt: (o) => dropApiEnv(o, 'INTAKE_ADMIN_PORT'),
      expect:
        /Deployment\/intake-api: behind Ingress via Service\/intake-api but INTAKE_ADMIN_PORT is not set/,
    },
    {
      policy: 'tokenOnlyWhenNeeded',
      what: 'token mounted without RBAC',
      breakIt: (o) => {
        byName(o, 'Deployment', 'go-app').spec.template.spec.automountServiceAccountToken = true;
      },
      expect: /Deployment\/go-app: mounts a service account token but has no API permissions/,
    },
  ];

describe('policies over the rendered overlays', { skip }, () => {
  const rendered = new Map<string, K8sObject[]>();
  before(async () => {
    for (const overlay of OVERLAYS) rendered.set(overlay, await renderOverlay(overlay));
  });

  for (const overlay of OVERLAYS) {
    for (const [name, policy] of Object.entries(POLICIES)) {
      test(`${overlay}: ${name}`, () => assert.deepEqual(policy(rendered.get(overlay)!), []));
    }
  }

  for (const b of BREAKAGES) {
    test(`negative: ${b.policy} reports ${b.what}`, () => {
      const objects = structuredClone(rendered.get('prod')!);
      assert.deepEqual(POLICIES[b.policy]!(objects), [], 'precondition: the policy holds before breaking');
      b.breakIt(objects);
      const violations = (POLICIES[b.policy] as Policy)(objects);
      assert.ok(
        violations.some((v) => b.expect.test(v)),
        `expected ${b.expect}, got ${JSON.stringify(violations)}`,
      );
    });
  }

  test('every policy has at least one negative test', () => {
    assert.deepEqual(
      Object.keys(POLICIES).filter((p) => !BREAKAGES.some((b) => b.policy === p)),
      [],
    );
  });

  test('every scrape job is known: the three ServiceMonitors, the pod watcher and CloudNativePG', () => {
    assert.deepEqual(scrapeJobs(rendered.get('prod')!).sort(), [
      'intake-api',
      'intake-worker',
      'intake/intake-pg',
      'nats-metrics',
      'pod-watcher',
    ]);
  });

  test('cluster-scoped names differ between the overlays (both can live in one cluster)', () => {
    const names = (o: K8sObject[]) =>
      o
        .filter((x) => ['ClusterRole', 'ClusterRoleBinding'].includes(x.kind))
        .map((x) => `${x.kind}/${x.metadata.name}`);
    const [dev, prod] = [names(rendered.get('dev')!), names(rendered.get('prod')!)];
    assert.ok(dev.length > 0);
    assert.deepEqual(
      dev.filter((n) => prod.includes(n)),
      [],
    );
  });

  for (const overlay of OVERLAYS) {
    test(`${overlay}: expected-secrets lists exactly the Secrets the overlay needs from outside`, () => {
      const listed = readFileSync(join(REPO, 'deploy/k8s/overlays', overlay, 'expected-secrets'), 'utf8')
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l && !l.startsWith('#'));
      assert.deepEqual(listed, expectedSecrets(rendered.get(overlay)!));
    });
  }

  test('each overlay backs up to its own object store', () => {
    const dest = (o: K8sObject[]) =>
      byName(o, 'Cluster', 'intake-pg').spec.backup.barmanObjectStore.destinationPath;
    assert.notEqual(dest(rendered.get('dev')!), dest(rendered.get('prod')!));
  });

  test('imagePinned', () => {
    for (const ok of [
      'nats:2.10.29-alpine',
      'ghcr.io/a/b:1.2',
      'localhost:5000/x:abc',
      `x@sha256:${'a'.repeat(64)}`,
    ]) {
      assert.ok(imagePinned(ok), ok);
    }
    for (const bad of ['nats', 'nats:latest', 'localhost:5000/x', 'ghcr.io/a/b:'])
      assert.ok(!imagePinned(bad), bad);
  });

  test('prod: HA shape (API HPA from 3 on CPU, 3 NATS members, 3 PostgreSQL instances, synchronous)', () => {
    const o = rendered.get('prod')!;
    const hpa = byName(o, 'HorizontalPodAutoscaler', 'intake-api');
    assert.ok(hpa.spec.minReplicas >= 3);
    assert.equal(hpa.spec.metrics[0].resource.name, 'cpu');
    assert.equal(byName(o, 'StatefulSet', 'nats').spec.replicas, 3);
    const pg = byName(o, 'Cluster', 'intake-pg');
    assert.equal(pg.spec.instances, 3);
    assert.notEqual(pg.spec.enablePDB, false);
    assert.equal(pg.spec.postgresql.synchronous.number, 1);
    for (const name of ['intake-worker', 'go-app'])
      assert.ok(byName(o, 'Deployment', name).spec.replicas >= 3);
    // prod references secrets managed outside git; it must not generate any.
    assert.deepEqual(
      o.filter((x) => x.kind === 'Secret').map((x) => x.metadata.name),
      [],
    );
  });

  test('dev: one PostgreSQL instance without synchronous replication (it would block every commit)', () => {
    const pg = byName(rendered.get('dev')!, 'Cluster', 'intake-pg');
    assert.equal(pg.spec.instances, 1);
    assert.equal(pg.spec.postgresql.synchronous, undefined);
  });

  for (const overlay of OVERLAYS) {
    test(`${overlay}: NATS lame duck (grace period + duration) fits the termination grace period`, () => {
      const o = rendered.get(overlay)!;
      const conf = String(
        o.find((x) => x.kind === 'ConfigMap' && x.metadata.name.startsWith('nats-config'))!.data['nats.conf'],
      );
      const secs = (key: string) => Number(conf.match(new RegExp(`^${key}:\\s*(\\d+)s`, 'm'))?.[1]);
      const sts = byName(o, 'StatefulSet', 'nats');
      const lameDuck = secs('lame_duck_grace_period') + secs('lame_duck_duration');
      assert.ok(lameDuck > 0, 'lame duck settings not found in nats.conf');
      assert.ok(lameDuck < sts.spec.template.spec.terminationGracePeriodSeconds);
      assert.deepEqual(sts.spec.template.spec.containers[0].lifecycle.preStop.exec.command.slice(0, 2), [
        'nats-server',
        '--signal',
      ]);
      assert.ok(sts.spec.volumeClaimTemplates.length >= 1, 'NATS has no persistent volumes');
    });

    test(`${overlay}: api and worker wait for the migration Job (deploy-apps runs it first)`, () => {
      const job = byName(rendered.get(overlay)!, 'Job', 'intake-migrate');
      assert.deepEqual(job.spec.template.spec.containers[0].args, ['migrate']);
    });

    test(`${overlay}: partition upkeep runs hourly as the owner, as the migration Job does, reaching only PostgreSQL`, () => {
      const o = rendered.get(overlay)!;
      const cron = byName(o, 'CronJob', 'intake-maintain');
      const job = byName(o, 'Job', 'intake-migrate');
      assert.match(cron.spec.schedule, /^\d+ \* \* \* \*$/);
      assert.equal(cron.spec.concurrencyPolicy, 'Forbid');
      const pod = cron.spec.jobTemplate.spec.template.spec;
      const c = pod.containers[0];
      const m = job.spec.template.spec.containers[0];
      assert.deepEqual(c.args, ['maintain']);
      assert.equal(c.image, m.image, 'the same image as the migration Job');
      const env = (x: Any, name: string) => x.env.find((e: Any) => e.name === name);
      assert.deepEqual(env(c, 'DATABASE_URL'), env(m, 'DATABASE_URL'), 'the owner login');
      assert.deepEqual(env(c, 'PGPASSWORD'), env(m, 'PGPASSWORD'), "the owner's Secret");
      const [ce, me] = [plainEnv(o, c), plainEnv(o, m)];
      assert.equal(ce.INTAKE_RETENTION_DAYS, me.INTAKE_RETENTION_DAYS, 'the retention migrate records');
      assert.deepEqual(
        Object.keys(ce).filter((k) => k.startsWith('NATS_')),
        [],
        'no NATS settings or login',
      );
      assert.equal(pod.automountServiceAccountToken, false);
      assert.equal(pod.serviceAccountName, 'intake-maintain');
      const np = byName(o, 'NetworkPolicy', 'intake-maintain');
      assert.deepEqual(np.spec.ingress, []);
      assert.deepEqual(
        np.spec.egress.map((r: Any) => [r.to[0].podSelector.matchLabels, r.ports.map((p: Any) => p.port)]),
        [[{ 'cnpg.io/cluster': 'intake-pg' }, [5432]]],
      );
      const pgIn = byName(o, 'NetworkPolicy', 'intake-pg').spec.ingress[0].from[0].podSelector
        .matchExpressions[0];
      assert.ok(pgIn.values.includes('intake-maintain'), 'PostgreSQL admits it');
    });

    test(`${overlay}: containers on the intake image carry a V8 heap limit of ~75 % of their memory limit`, () => {
      for (const p of podOwners(rendered.get(overlay)!).filter((x) => x.owner.kind === 'Deployment')) {
        for (const c of p.spec.containers) {
          const opt = c.env?.find((e: Any) => e.name === 'NODE_OPTIONS')?.value;
          if (!String(c.image).includes('/intake:') || !opt) continue;
          const heapMi = Number(String(opt).match(/--max-old-space-size=(\d+)/)?.[1]);
          const limit = String(c.resources.limits.memory);
          const limitMi = limit.endsWith('Gi') ? Number.parseFloat(limit) * 1024 : Number.parseFloat(limit);
          assert.ok(
            Math.abs(heapMi / limitMi - 0.75) < 0.05,
            `${p.owner.metadata.name}: ${heapMi} of ${limit}`,
          );
        }
      }
    });
  }

  test('the pod watcher admits only Prometheus, and reaches only DNS and private addresses on 443/6443', () => {
    for (const overlay of OVERLAYS) {
      const np = byName(rendered.get(overlay)!, 'NetworkPolicy', 'pod-watcher');
      assert.deepEqual(
        np.spec.ingress.map((r: Any) => r.from),
        [
          [
            {
              namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } },
              podSelector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus' } },
            },
          ],
        ],
      );
      for (const rule of np.spec.egress) {
        const ports = rule.ports.map((p: Any) => `${p.protocol}/${p.port}`).sort();
        const dns = rule.to.every((t: Any) => t.podSelector?.matchLabels?.['k8s-app'] === 'kube-dns');
        if (dns) assert.deepEqual(ports, ['TCP/53', 'UDP/53']);
        else {
          assert.deepEqual(ports, ['TCP/443', 'TCP/6443']);
          for (const t of rule.to) {
            assert.ok(t.ipBlock, 'API server egress is by address');
            assert.match(t.ipBlock.cidr, /^(10\.|172\.(1[6-9]|2\d|3[01])\.|192\.168\.)/, t.ipBlock.cidr);
          }
        }
      }
    }
  });

  test('the pod watcher is part of the base', () => {
    assert.ok(existsSync(join(REPO, 'deploy/k8s/base/pod-watcher/kustomization.yaml')));
    const k = readFileSync(join(REPO, 'deploy/k8s/base/kustomization.yaml'), 'utf8');
    assert.match(k, /^\s+- pod-watcher\s*$/m);
    assert.ok(
      rendered.get('prod')!.some((o) => o.metadata.labels?.['app.kubernetes.io/name'] === 'pod-watcher'),
    );
  });
});
