package agent_test

import (
	"runtime"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/agent"
)

// windows_service restarts a Windows service; elsewhere the config says
// what to use instead.
func TestWindowsServiceReload(t *testing.T) {
	cfg := "node_id = \"n\"\n[[bundle]]\nname = \"b\"\nlayout = \"flocker-node\"\n[[bundle.reload]]\nwindows_service = %s\n"
	_, err := agent.ParseConfig("c.toml", []byte(strings.Replace(cfg, "%s", `"Flocker Agent"`, 1)))
	if runtime.GOOS != "windows" && (err == nil || !strings.Contains(err.Error(), "use systemd, signal or command")) {
		t.Errorf("windows_service on %s: %v", runtime.GOOS, err)
	}
	if runtime.GOOS == "windows" && err != nil {
		t.Errorf("windows_service on Windows: %v", err)
	}
	_, err = agent.ParseConfig("c.toml", []byte(strings.Replace(cfg, "%s", `"a\\b"`, 1)))
	if err == nil || !strings.Contains(err.Error(), "not a Windows service name") {
		t.Errorf("a service name with a backslash: %v", err)
	}
	both := strings.Replace(cfg, "%s", "\"x\"\nsystemd = \"x.service\"", 1)
	if _, err := agent.ParseConfig("c.toml", []byte(both)); err == nil || !strings.Contains(err.Error(), "set only one") {
		t.Errorf("windows_service with systemd: %v", err)
	}
}
