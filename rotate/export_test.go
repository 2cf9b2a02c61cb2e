package rotate

// SetCrashAt makes s call f at each step of a copy-mode swap ("journaled",
// "copied NAME", "pointed"), for tests that end the process there.
func SetCrashAt(s *Store, f func(step string)) { s.crashAt = f }
