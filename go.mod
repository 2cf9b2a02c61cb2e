module github.com/certkeeper/certkeeper

go 1.26.0

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/youmark/pkcs8 v0.0.0-20240726163527-a2c0da244d78
	go.etcd.io/bbolt v1.5.0
	golang.org/x/sys v0.49.0
	golang.org/x/term v0.47.0
)

require golang.org/x/crypto v0.22.0 // indirect
