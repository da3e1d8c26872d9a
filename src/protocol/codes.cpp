#include "protocol/codes.hpp"

namespace imgate {

std::string_view code_message(Code code) {
  switch (code) {
    case Code::kOk: return "Success";
    case Code::kNotLoggedIn: return "未登录";
    case Code::kParameterIllegal: return "参数不合法";
    case Code::kUnauthorizedUserId: return "非法的用户ID";
    case Code::kUnauthorized: return "未授权";
    case Code::kServerError: return "系统错误";
    case Code::kNotData: return "没有数据";
    case Code::kModelAddError: return "添加错误";
    case Code::kModelDeleteError: return "删除错误";
    case Code::kModelStoreError: return "存储错误";
    case Code::kOperationFailure: return "操作失败";
    case Code::kRoutingNotExist: return "路由不存在";
  }
  return "系统错误";
}

}  // namespace imgate
