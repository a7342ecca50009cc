package deploy

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// manifests is the Kustomize output, decoded.
type manifests struct {
	deployments  map[string]*appsv1.Deployment
	services     map[string]*corev1.Service
	pdbs         map[string]*policyv1.PodDisruptionBudget
	hpas         map[string]*autoscalingv2.HorizontalPodAutoscaler
	pvcs         map[string]*corev1.PersistentVolumeClaim
	configMaps   map[string]*corev1.ConfigMap
	namespaces   map[string]*corev1.Namespace
	custom       map[string][]map[string]any // kind → objects
	customNames  map[string][]string         // kind → names
	scaledTarget map[string]string           // ScaledObject name → its scaleTargetRef.name
	monitorSel   []map[string]string         // ServiceMonitor matchLabels
}

// memFS copies the directory dir of the disk into an in-memory file
// system, under the same path, changing it with edit when edit is set.
func memFS(t *testing.T, dir string, edit func(name string, b []byte) []byte) filesys.FileSystem {
	t.Helper()
	mem := filesys.MakeFsInMemory()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if edit != nil {
			b = edit(path, b)
		}
		return mem.WriteFile("/"+filepath.ToSlash(path), b)
	})
	if err != nil {
		t.Fatal(err)
	}
	return mem
}

// buildKustomize builds dir with kustomize and decodes every object:
// core objects strictly into the Kubernetes API types (an unknown or
// duplicate field fails, as kubectl apply --validate=strict would), custom
// resources against their CRDs' schemas.
func buildKustomize(fsys filesys.FileSystem, dir string, schemas crdSchemas) (*manifests, error) {
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fsys, "/"+dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme, autoscalingv2.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	decoder := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	m := &manifests{
		deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{},
		pdbs: map[string]*policyv1.PodDisruptionBudget{}, hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		pvcs: map[string]*corev1.PersistentVolumeClaim{}, namespaces: map[string]*corev1.Namespace{},
		configMaps: map[string]*corev1.ConfigMap{},
		custom:     map[string][]map[string]any{}, customNames: map[string][]string{}, scaledTarget: map[string]string{},
	}
	var errs []error
	for _, r := range res.Resources() {
		b, err := r.MarshalJSON()
		if err != nil {
			return nil, err
		}
		gvk := r.GetGvk()
		id := fmt.Sprintf("%s %s", gvk.Kind, r.GetName())
		if gvk.Group == "keda.sh" || gvk.Group == "monitoring.coreos.com" {
			key := fmt.Sprintf("%s/%s, Kind=%s", gvk.Group, gvk.Version, gvk.Kind)
			if err := schemas.validate(key, b); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", id, err))
				continue
			}
			m.customNames[gvk.Kind] = append(m.customNames[gvk.Kind], r.GetName())
			switch gvk.Kind {
			case "ScaledObject":
				target, _ := r.GetFieldValue("spec.scaleTargetRef.name")
				m.scaledTarget[r.GetName()], _ = target.(string)
			case "ServiceMonitor":
				sel, _ := r.GetFieldValue("spec.selector.matchLabels")
				ml := map[string]string{}
				if sm, ok := sel.(map[string]any); ok {
					for k, v := range sm {
						ml[k], _ = v.(string)
					}
				}
				m.monitorSel = append(m.monitorSel, ml)
			}
			continue
		}
		obj, _, err := decoder.Decode(b, nil, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", id, err))
			continue
		}
		switch o := obj.(type) {
		case *appsv1.Deployment:
			m.deployments[o.Name] = o
		case *corev1.Service:
			m.services[o.Name] = o
		case *policyv1.PodDisruptionBudget:
			m.pdbs[o.Name] = o
		case *autoscalingv2.HorizontalPodAutoscaler:
			m.hpas[o.Name] = o
		case *corev1.PersistentVolumeClaim:
			m.pvcs[o.Name] = o
		case *corev1.Namespace:
			m.namespaces[o.Name] = o
		case *corev1.ConfigMap:
			m.configMaps[o.Name] = o
		default:
			errs = append(errs, fmt.Errorf("%s: a kind the test does not check yet", id))
		}
	}
	return m, errors.Join(errs...)
}

// secretKeys are the keys of the Secret ficus-db that docs/deploy.md
// tells the operator to create.
var secretKeys = []string{"state-url", "shop-url", "mes-url"}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// check checks the decoded manifests for what strict decoding cannot
// see: every ficus command line against the command tree, references
// between objects (selectors, ports, scale targets), probes, resources
// and the restricted Pod Security Standard.
func (m *manifests) check(c *ficusCLI) error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, name := range slices.Sorted(maps.Keys(m.deployments)) {
		d := m.deployments[name]
		sel, err := metav1LabelSelector(d.Spec.Selector.MatchLabels)
		if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			fail("deployment %s: its selector does not match its pods' labels", name)
		}
		pod := d.Spec.Template.Spec
		if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot ||
			psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			fail("deployment %s: the pod must run as non-root with the RuntimeDefault seccomp profile", name)
		}
		all := append(slices.Clone(pod.InitContainers), pod.Containers...)
		for i, ctr := range all {
			where := fmt.Sprintf("deployment %s, container %s", name, ctr.Name)
			if !strings.HasPrefix(ctr.Image, "ficus/ficus:") {
				fail("%s: image %q, want ficus/ficus:TAG", where, ctr.Image)
			}
			defined := map[string]bool{}
			var envNames []string
			for _, e := range ctr.Env {
				for _, ref := range varRef.FindAllStringSubmatch(e.Value, -1) {
					if !defined[ref[1]] {
						fail("%s: env %s refers to $(%s), not defined before it", where, e.Name, ref[1])
					}
				}
				defined[e.Name] = true
				envNames = append(envNames, e.Name)
				if s := e.ValueFrom; s != nil && s.SecretKeyRef != nil &&
					(s.SecretKeyRef.Name != "ficus-db" || !slices.Contains(secretKeys, s.SecretKeyRef.Key)) {
					fail("%s: env %s from secret %s key %s, want ficus-db with one of %v", where, e.Name, s.SecretKeyRef.Name, s.SecretKeyRef.Key, secretKeys)
				}
			}
			args := slices.Clone(ctr.Args)
			for j, a := range args {
				for _, ref := range varRef.FindAllStringSubmatch(a, -1) {
					if !defined[ref[1]] {
						fail("%s: argument %q refers to $(%s), which its env does not define", where, a, ref[1])
					}
				}
				args[j] = varRef.ReplaceAllString(a, "postgres://ficus@postgres:5432/ficus")
			}
			if len(ctr.Command) > 0 {
				fail("%s: set args, not command (the image's entrypoint is ficus)", where)
			}
			if err := c.check(args, envNames); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
			}
			if sc := ctr.SecurityContext; sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				fail("%s: needs allowPrivilegeEscalation false, readOnlyRootFilesystem true and capabilities drop ALL", where)
			}
			if ctr.Resources.Requests.Cpu().IsZero() || ctr.Resources.Requests.Memory().IsZero() || ctr.Resources.Limits.Memory().IsZero() {
				fail("%s: needs CPU and memory requests and a memory limit", where)
			}
			if i < len(pod.InitContainers) {
				continue
			}
			m.checkPorts(d, ctr, fail)
			if err := m.checkProxyConfig(d, ctr); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(m.services)) {
		s := m.services[name]
		var matched []*appsv1.Deployment
		for _, d := range m.deployments {
			if len(s.Spec.Selector) > 0 && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				matched = append(matched, d)
			}
		}
		if len(matched) != 1 {
			fail("service %s selects %d deployments, want 1", name, len(matched))
			continue
		}
		for _, p := range s.Spec.Ports {
			if !slices.ContainsFunc(matched[0].Spec.Template.Spec.Containers, func(ctr corev1.Container) bool {
				return slices.ContainsFunc(ctr.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == p.TargetPort.String() })
			}) {
				fail("service %s: targetPort %s is no container port of deployment %s", name, p.TargetPort.String(), matched[0].Name)
			}
		}
	}
	for name, p := range m.pdbs {
		if !m.selectsDeployment(p.Spec.Selector.MatchLabels) {
			fail("poddisruptionbudget %s selects no deployment", name)
		}
	}
	for name, h := range m.hpas {
		if _, ok := m.deployments[h.Spec.ScaleTargetRef.Name]; !ok || h.Spec.ScaleTargetRef.Kind != "Deployment" {
			fail("horizontalpodautoscaler %s scales %s %s, which does not exist", name, h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name)
		}
	}
	for name, target := range m.scaledTarget {
		if _, ok := m.deployments[target]; !ok {
			fail("scaledobject %s scales deployment %q, which does not exist", name, target)
		}
	}
	// Every deployment's metrics are scraped.
	for _, name := range slices.Sorted(maps.Keys(m.deployments)) {
		d := m.deployments[name]
		scraped := false
		for _, s := range m.services {
			if !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				continue
			}
			for _, sel := range m.monitorSel {
				if labels.SelectorFromSet(sel).Matches(labels.Set(s.Labels)) &&
					slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == "metrics" }) {
					scraped = true
				}
			}
		}
		if !scraped {
			fail("deployment %s: no ServiceMonitor scrapes a Service of it on a port named metrics", name)
		}
	}
	return errors.Join(errs...)
}

// checkPorts checks a ficus container's ports and probes: --metrics-listen
// serves on all interfaces at the port named metrics (and the scrape
// annotation's), liveness probes /healthz, readiness /readyz, on named
// ports that exist.
func (m *manifests) checkPorts(d *appsv1.Deployment, ctr corev1.Container, fail func(string, ...any)) {
	where := fmt.Sprintf("deployment %s, container %s", d.Name, ctr.Name)
	ports := map[string]int32{}
	for _, p := range ctr.Ports {
		ports[p.Name] = p.ContainerPort
	}
	i := slices.Index(ctr.Args, "--metrics-listen")
	if i < 0 || i+1 >= len(ctr.Args) {
		fail("%s: no --metrics-listen (the default listens on loopback, where no probe reaches)", where)
		return
	}
	host, port, err := net.SplitHostPort(ctr.Args[i+1])
	if err != nil || host != "0.0.0.0" || port != fmt.Sprint(ports["metrics"]) {
		fail("%s: --metrics-listen %s, want 0.0.0.0 and the port named metrics (%d)", where, ctr.Args[i+1], ports["metrics"])
	}
	if a := d.Spec.Template.Annotations["prometheus.io/port"]; a != port {
		fail("%s: annotation prometheus.io/port %q, --metrics-listen port %s", where, a, port)
	}
	if j := slices.Index(ctr.Args, "--listen"); j >= 0 {
		h, p, err := net.SplitHostPort(ctr.Args[j+1])
		if err != nil || h != "0.0.0.0" || p != fmt.Sprint(ports["http"]) {
			fail("%s: --listen %s, want 0.0.0.0 and the port named http (%d)", where, ctr.Args[j+1], ports["http"])
		}
	}
	probe := func(kind string, p *corev1.Probe, path string) {
		switch {
		case p == nil:
			fail("%s: no %s probe", where, kind)
		case p.HTTPGet == nil || p.HTTPGet.Path != path:
			fail("%s: the %s probe must GET %s", where, kind, path)
		case ports[p.HTTPGet.Port.String()] == 0:
			fail("%s: the %s probe's port %s is no named container port", where, kind, p.HTTPGet.Port.String())
		}
	}
	probe("liveness", ctr.LivenessProbe, "/healthz")
	if ctr.ReadinessProbe != nil || !standsBy(ctr.Args) {
		probe("readiness", ctr.ReadinessProbe, "/readyz")
	}
}

// standsBy reports whether a command line runs a process that may stand
// by (cdc run, an outbox relay in message mode), whose /readyz answers
// 503 by design while it does.
func standsBy(args []string) bool {
	return len(args) >= 2 && (args[0] == "cdc" && args[1] == "run" || args[0] == "outbox" && args[1] == "relay")
}

func (m *manifests) selectsDeployment(sel map[string]string) bool {
	for _, d := range m.deployments {
		if len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(d.Spec.Template.Labels)) {
			return true
		}
	}
	return false
}

func metav1LabelSelector(ml map[string]string) (labels.Selector, error) {
	if len(ml) == 0 {
		return nil, errors.New("empty selector")
	}
	return labels.SelectorFromSet(ml), nil
}

// argsOf returns the first container's arguments of a deployment.
func argsOf(d *appsv1.Deployment) []string { return d.Spec.Template.Spec.Containers[0].Args }

func TestKubernetes(t *testing.T) {
	t.Parallel()
	schemas, err := loadCRDSchemas("testdata/crds")
	if err != nil {
		t.Fatal(err)
	}
	m, err := buildKustomize(memFS(t, "kubernetes", nil), "kubernetes", schemas)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.check(newCLI(t)); err != nil {
		t.Fatal(err)
	}

	// What the deployment promises (docs/deploy.md#kubernetes).
	proxy := m.deployments["proxy"]
	if proxy == nil || *proxy.Spec.Replicas < 2 || m.pdbs["proxy"] == nil || m.hpas["proxy"] == nil {
		t.Fatal("the proxy needs several replicas, a PodDisruptionBudget and an HPA")
	}
	if !slices.ContainsFunc(proxy.Spec.Template.Spec.Containers[0].Env, func(e corev1.EnvVar) bool { return e.Name == "FICUS_DATABASE_URL" }) {
		t.Error("the proxy replicas need the shared Postgres idempotency store (FICUS_DATABASE_URL)")
	}
	pairs := map[string]int{}
	lanes := map[string]string{}
	var serve, api bool
	for name, d := range m.deployments {
		args := argsOf(d)
		switch {
		case standsBy(args):
			if *d.Spec.Replicas != 2 {
				t.Errorf("deployment %s: %d replicas, want 2 (active and standby)", name, *d.Spec.Replicas)
			}
			if m.pdbs[name] == nil {
				t.Errorf("deployment %s: no PodDisruptionBudget", name)
			}
			pairs[args[0]]++
		case args[0] == "pricing" && args[1] == "worker":
			lanes[args[slices.Index(args, "--lane")+1]] = name
		case args[0] == "pricing" && args[1] == "api":
			api = true
		case args[0] == "orders" && args[1] == "serve":
			serve = true
		}
	}
	if pairs["cdc"] < 1 || pairs["outbox"] != 1 || !api || !serve {
		t.Errorf("cdc pairs %d, outbox pairs %d, pricing api %v, orders serve %v", pairs["cdc"], pairs["outbox"], api, serve)
	}
	for _, lane := range []string{"b2b", "b2c"} {
		worker, ok := lanes[lane]
		if !ok {
			t.Errorf("no pricing worker deployment for the lane %s", lane)
			continue
		}
		if !slices.ContainsFunc(slices.Collect(maps.Keys(m.scaledTarget)), func(so string) bool { return m.scaledTarget[so] == worker }) {
			t.Errorf("the %s worker (%s) has no ScaledObject", lane, worker)
		}
	}
	if len(m.customNames["ServiceMonitor"]) == 0 {
		t.Error("no ServiceMonitor")
	}
}

// A mistake in the manifests fails the test: strict decoding, the CRD
// schemas, the command tree, the references between objects.
func TestKubernetesCheckRejectsMistakes(t *testing.T) {
	t.Parallel()
	schemas, err := loadCRDSchemas("testdata/crds")
	if err != nil {
		t.Fatal(err)
	}
	c := newCLI(t)
	for _, tc := range []struct{ file, from, to, want string }{
		{"proxy.yaml", "  replicas: 3\n", "  replica: 3\n", `unknown field "spec.replica"`},
		{"proxy.yaml", "maxReplicas: 12", "maxReplicas: twelve", "maxReplicas"},
		{"pricing.yaml", "  minReplicaCount: 1\n", "  minReplicaCont: 1\n", "minReplicaCont"},
		{"pricing.yaml", "    - type: prometheus\n", "    - typ: prometheus\n", "typ"},
		{"servicemonitor.yaml", "interval: 15s", "intervall: 15s", "intervall"},
		{"proxy.yaml", `"--upstream"`, `"--upstreem"`, "no flag --upstreem"},
		{"pricing.yaml", `"--lane", "b2c"`, `"--lanes", "b2c"`, "no flag --lanes"},
		{"cdc.yaml", "targetPort: metrics", "targetPort: metric", "targetPort metric"},
		{"pricing.yaml", "    name: pricing-worker-b2c\n  minReplicaCount", "    name: pricing-worker-b2x\n  minReplicaCount", "pricing-worker-b2x"},
		{"orders.yaml", "key: state-url}", "key: state_url}", "state_url"},
		{"proxy-config.yaml", "store: postgres", "store: postgress", "postgress"},
		{"proxy-config.yaml", "  ttl: 24h", "  tll: 24h", "tll"},
	} {
		edited := false
		fsys := memFS(t, "kubernetes", func(name string, b []byte) []byte {
			if filepath.Base(name) != tc.file || !strings.Contains(string(b), tc.from) {
				return b
			}
			edited = true
			return []byte(strings.Replace(string(b), tc.from, tc.to, 1))
		})
		if !edited {
			t.Fatalf("%s has no %q", tc.file, tc.from)
		}
		m, err := buildKustomize(fsys, "kubernetes", schemas)
		if err == nil {
			err = m.check(c)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %q → %q: %v, want an error about %s", tc.file, tc.from, tc.to, err, tc.want)
		}
	}
}

// checkProxyConfig parses the file a proxy container's --config names,
// from the ConfigMap mounted there, with the proxy's own parser, and
// checks that the replicas share the Postgres idempotency store.
func (m *manifests) checkProxyConfig(d *appsv1.Deployment, ctr corev1.Container) error {
	if len(ctr.Args) == 0 || ctr.Args[0] != "proxy" {
		return nil
	}
	i := slices.Index(ctr.Args, "--config")
	if i < 0 {
		return errors.New("no --config: without one the idempotency store is in memory, one per replica")
	}
	path := ctr.Args[i+1]
	for _, vm := range ctr.VolumeMounts {
		if filepath.Dir(path) != vm.MountPath {
			continue
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name != vm.Name || v.ConfigMap == nil {
				continue
			}
			cm := m.configMaps[v.ConfigMap.Name]
			if cm == nil {
				return fmt.Errorf("--config %s: no ConfigMap %s", path, v.ConfigMap.Name)
			}
			data, ok := cm.Data[filepath.Base(path)]
			if !ok {
				return fmt.Errorf("--config %s: ConfigMap %s has no key %s", path, cm.Name, filepath.Base(path))
			}
			return checkProxyConfigData([]byte(data), ctr.Args[slices.Index(ctr.Args, "--upstream")+1])
		}
	}
	return fmt.Errorf("--config %s: no ConfigMap is mounted at %s", path, filepath.Dir(path))
}
