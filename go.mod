module github.com/certkeeper/certkeeper

go 1.26.0

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/kardianos/service v1.3.0
	golang.org/x/sys v0.49.0
)
