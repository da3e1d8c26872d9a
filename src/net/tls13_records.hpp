// Tls13Records: the TLS 1.3 record layer of an upgraded wss connection, after
// OpenSSL has done the handshake (docs/security.md, "TLS memory").
//
// OpenSSL 3.0 keeps ~14 KB per established connection (the SSL object alone
// is 7.6 KB), which is most of what an idle wss connection costs. What the
// record layer needs once the handshake is over is far smaller: per
// direction a traffic secret, the key and IV derived from it and a sequence
// number (RFC 8446 §5). So the handshake, the HTTP phase and every
// cryptographic operation stay OpenSSL's, and at the upgrade a TLS 1.3
// connection's record protection moves here and its SSL object is freed.
//
// What the takeover needs from OpenSSL, through public callbacks installed on
// the server context (install_capture):
//  - the application traffic secrets: the key log callback (the lines
//    CLIENT_TRAFFIC_SECRET_0 / SERVER_TRAFFIC_SECRET_0);
//  - the sequence numbers: the message callback reports every record header
//    read or written and every handshake message; the records after each
//    side's Finished are the ones under the application keys, so their
//    count is the next sequence number of that direction.
//
// After the takeover: application data both ways, KeyUpdate from the client
// (answered with ours when it asks, RFC 8446 §4.6.3), close_notify both ways.
// Anything else (another handshake message, an alert other than
// close_notify, a record that does not decrypt, a record over 2^14 bytes of
// plaintext) is a fatal error. TLS 1.2 connections keep their SSL object.
#pragma once

#include <openssl/ssl.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace imgate {

class Tls13Records {
 public:
  // Sets the callbacks that record what a takeover needs on every SSL of
  // `ctx` (a server context).
  static void install_capture(SSL_CTX* ctx);
  // The record state of `ssl` (a finished TLS 1.3 handshake of a context
  // with install_capture, nothing buffered in it); null when it cannot be
  // taken over (TLS 1.2, an unknown cipher, nothing captured). The SSL object
  // is left as it is: the caller frees it.
  static std::unique_ptr<Tls13Records> take_over(SSL* ssl);
  // The record state for known application traffic secrets (take_over, and
  // the tests and the fuzzer, which play both ends): `suite_id` one of
  // 0x1301-0x1303, the secrets as long as its hash; null otherwise.
  static std::unique_ptr<Tls13Records> from_secrets(uint16_t suite_id,
                                                    const unsigned char* read_secret,
                                                    const unsigned char* write_secret,
                                                    std::size_t secret_len, uint64_t read_seq = 0,
                                                    uint64_t write_seq = 0);

  // Largest record: 2^14 bytes of plaintext, its content type, the tag and
  // the header.
  static constexpr std::size_t kMaxPlaintext = 16384;
  static constexpr std::size_t kMaxRecord = 5 + kMaxPlaintext + 256;
  static constexpr std::size_t kOverhead = 5 + 1 + 16;  // header, content type, tag

  enum class Status : uint8_t { kOk, kClosed, kError };
  struct Opened {
    std::size_t consumed = 0;  // bytes of `in` taken (whole records only)
    std::size_t produced = 0;  // application bytes written to `out`
    Status status = Status::kOk;
  };
  // Decrypts the complete records at the front of `in` while their plaintext
  // fits in `out`. kClosed: a close_notify came (what precedes it is
  // produced); kError: a fatal error (error() says which).
  Opened open(unsigned char* in, std::size_t in_len, unsigned char* out, std::size_t out_size);

  // Encrypts bytes from `iov` (`count` buffers) as application_data records
  // into `out` (room `out_size`, at least one record's overhead more than a
  // byte), preceded by our KeyUpdate when the client asked for one. Returns
  // the bytes written to `out`; `taken` is the plaintext consumed.
  std::size_t seal(const iovec* iov, std::size_t count, unsigned char* out, std::size_t out_size,
                   std::size_t& taken);
  // Our close_notify alert record into `out` (room >= kOverhead + 2); returns
  // its size.
  std::size_t seal_close_notify(unsigned char* out);
  // A KeyUpdate answer is owed (seal() writes it, even with nothing else).
  bool key_update_due() const { return key_update_due_; }
  const char* error() const { return error_; }

  Tls13Records(const Tls13Records&) = delete;
  Tls13Records& operator=(const Tls13Records&) = delete;
  ~Tls13Records();

 private:
  struct Direction {
    unsigned char secret[48];
    unsigned char key[32];
    unsigned char iv[12];
    uint64_t seq = 0;
  };
  Tls13Records() = default;
  bool derive(Direction& d) const;       // key and IV from the secret
  bool next_generation(Direction& d) const;  // KeyUpdate: the next secret, key, IV
  std::size_t seal_record(unsigned char type, const iovec* iov, std::size_t count,
                          std::size_t skip, std::size_t len, unsigned char* out);
  bool handshake_message(const unsigned char* msg, std::size_t len);

  Direction read_, write_;
  uint8_t suite_ = 0;        // index into the cipher table (tls13_records.cpp)
  uint8_t secret_len_ = 0;   // 32 (SHA-256) or 48 (SHA-384)
  bool key_update_due_ = false;
  const char* error_ = nullptr;
};

}  // namespace imgate
