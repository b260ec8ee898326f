/* The tiny CGI program every benchmark row runs: a complete response, no libc start-up beyond the minimum. */
#include <unistd.h>

static const char resp[] = "Content-Type: text/plain\r\n\r\nhello\n";

int main(void) {
	return write(1, resp, sizeof resp - 1) == sizeof resp - 1 ? 0 : 1;
}
