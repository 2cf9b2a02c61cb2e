/* bcryptprimitives.dll for Wine 8: Go 1.22 and later get their random
 * numbers from ProcessPrng, which Wine 8 lacks. Test tooling only (built
 * by scripts/wine/setup into a throw-away Wine prefix), never shipped:
 * real Windows has its own bcryptprimitives.dll.
 *
 * RtlGenRandom is exported by advapi32 as SystemFunction036. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
	while (len > 0) {
		ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
		if (!SystemFunction036(data, n))
			return FALSE;
		data += n;
		len -= n;
	}
	return TRUE;
}
