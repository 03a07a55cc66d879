import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Certificates for TLS tests, made with the real `openssl` command line: a CA, and leaf certificates it
 * signs for given names. ECDSA P-256, as cert-manager issues them (deploy/k8s/base/nats/certificates.yaml).
 */
export interface TestCa {
  /** PEM files. */
  cert: string;
  key: string;
  /** Issues a leaf certificate; returns its PEM files (`<name>.crt`, `<name>.key`). */
  issue(name: string, opts: IssueOptions): { cert: string; key: string };
}

export interface IssueOptions {
  /** subjectAltName entries, e.g. `DNS:nats`, `IP:127.0.0.1`. */
  sans: string[];
  /** Extended key usages (default serverAuth). */
  usages?: Array<'serverAuth' | 'clientAuth'>;
  commonName?: string;
}

const openssl = (args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });

function newKey(file: string): void {
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file]);
}

/** A self-signed CA under `dir`, files named after `label`. */
export function makeCa(dir: string, label: string): TestCa {
  const key = join(dir, `${label}-ca.key`);
  const cert = join(dir, `${label}-ca.crt`);
  newKey(key);
  openssl([
    'req',
    '-x509',
    '-new',
    '-key',
    key,
    '-subj',
    `/CN=${label} test CA`,
    '-days',
    '2',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
    '-out',
    cert,
  ]);
  let serial = 1;
  return {
    cert,
    key,
    issue(name, opts) {
      const leafKey = join(dir, `${label}-${name}.key`);
      const leafCert = join(dir, `${label}-${name}.crt`);
      const csr = join(dir, `${label}-${name}.csr`);
      const ext = join(dir, `${label}-${name}.ext`);
      newKey(leafKey);
      openssl(['req', '-new', '-key', leafKey, '-subj', `/CN=${opts.commonName ?? name}`, '-out', csr]);
      writeFileSync(
        ext,
        [
          'basicConstraints=critical,CA:FALSE',
          'keyUsage=critical,digitalSignature',
          `extendedKeyUsage=${(opts.usages ?? ['serverAuth']).join(',')}`,
          `subjectAltName=${opts.sans.join(',')}`,
        ].join('\n'),
      );
      openssl([
        'x509',
        '-req',
        '-in',
        csr,
        '-CA',
        cert,
        '-CAkey',
        key,
        '-set_serial',
        String(serial++),
        '-days',
        '2',
        '-extfile',
        ext,
        '-out',
        leafCert,
      ]);
      return { cert: leafCert, key: leafKey };
    },
  };
}
