/**
 * A large release for the validation benchmark: applications of a Deployment, a Service and a ConfigMap each, laid
 * out as teams keep them (the Deployment in a file of its own, Service and ConfigMap in one multi-document file).
 * The Deployments pass the shipped security rules, so the figures are those of a release that goes through.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** The repository the release's own containers name; the deploy pins it by digest. */
export const BENCH_IMAGE_REPOSITORY = '127.0.0.1:5000/bench-shop';
const SIDECAR_DIGEST = `sha256:${'ab'.repeat(32)}`;

const deployment = (app: string, index: number): string => `apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${app}
  labels:
    app.kubernetes.io/name: ${app}
    app.kubernetes.io/part-of: bench-shop
  annotations:
    team: team-${index % 17}
spec:
  replicas: ${1 + (index % 3)}
  selector:
    matchLabels:
      app.kubernetes.io/name: ${app}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: ${app}
    spec:
      securityContext:
        runAsNonRoot: true
        runAsUser: 65534
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: web
          image: ${BENCH_IMAGE_REPOSITORY}:latest
          args: ["--port=8080", "--log-format=json"]
          ports:
            - name: http
              containerPort: 8080
          env:
            - name: LOG_LEVEL
              value: info
            - name: WORKERS
              value: "${2 + (index % 4)}"
            - name: API_TOKEN
              valueFrom:
                secretKeyRef:
                  name: ${app}-credentials
                  key: token
          envFrom:
            - configMapRef:
                name: ${app}-config
          readinessProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: 5
          securityContext:
            allowPrivilegeEscalation: false
            capabilities:
              drop: [ALL]
          resources:
            requests:
              cpu: 50m
              memory: 64Mi
            limits:
              cpu: 250m
              memory: 128Mi
        - name: metrics
          image: 127.0.0.1:5000/metrics-exporter@${SIDECAR_DIGEST}
          ports:
            - name: metrics
              containerPort: 9100
          securityContext:
            allowPrivilegeEscalation: false
            capabilities:
              drop: [ALL]
          resources:
            limits:
              cpu: 50m
              memory: 32Mi
`;

const service = (app: string): string => `apiVersion: v1
kind: Service
metadata:
  name: ${app}
  labels:
    app.kubernetes.io/name: ${app}
spec:
  selector:
    app.kubernetes.io/name: ${app}
  ports:
    - name: http
      port: 80
      targetPort: http
`;

const configMap = (app: string, index: number): string => `apiVersion: v1
kind: ConfigMap
metadata:
  name: ${app}-config
  labels:
    app.kubernetes.io/name: ${app}
data:
  GREETING: "hello from ${app}"
  FEATURE_FLAGS: "checkout,search${index % 2 ? ',recommendations' : ''}"
  settings.json: |
    {"timeoutMs": ${1000 + index}, "retries": 3, "upstream": "http://${app}-backend"}
`;

/**
 * Writes a release of exactly `objects` objects under `dir`, one folder per application (a Deployment, a Service and
 * a ConfigMap; the last application may lack the latter two). Returns the number of files written.
 */
export async function writeBenchRelease(dir: string, objects: number): Promise<number> {
  const files: [string, string][] = [];
  for (let index = 0, left = objects; left > 0; index++, left -= 3) {
    const app = `app-${String(index).padStart(5, '0')}`;
    files.push([path.join(dir, app, 'deployment.yaml'), deployment(app, index)]);
    const rest = [service(app), configMap(app, index)].slice(0, left - 1);
    if (rest.length) files.push([path.join(dir, app, 'service.yaml'), rest.join('---\n')]);
  }
  // A few hundred writes at a time: thousands at once would only queue in libuv's pool.
  const batch = 256;
  for (let start = 0; start < files.length; start += batch)
    await Promise.all(
      files.slice(start, start + batch).map(async ([file, text]) => {
        await mkdir(path.dirname(file), { recursive: true });
        await writeFile(file, text);
      }),
    );
  return files.length;
}
