// Separate compilation of Asio and Beast (BOOST_*_SEPARATE_COMPILATION):
// their implementation is compiled here once instead of in every user.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
