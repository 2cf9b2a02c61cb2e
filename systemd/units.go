// Package systemd holds certkeeper's systemd units, embedded so that
// `certkeeper service install` writes the same hardened unit the packages
// ship. The files beside this one are the source; packages copy them as
// they are.
package systemd

import _ "embed"

// Agent is certkeeper.service: the node agent, Type=notify, hardened.
//
//go:embed certkeeper.service
var Agent string

// CARenewService and CARenewTimer renew the admin host's node
// certificates hourly (ca renew --within 40%), then sync the chroots.
var (
	//go:embed certkeeper-ca-renew.service
	CARenewService string
	//go:embed certkeeper-ca-renew.timer
	CARenewTimer string
)

// AgentExecStart is the command line of the shipped agent unit; a rendered
// unit replaces it.
const AgentExecStart = "/usr/bin/certkeeper agent --config /etc/certkeeper/certkeeper.toml"
