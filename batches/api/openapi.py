"""What django-ninja cannot know on its own: each operation's params, and the links that lead
from a started batch to its other endpoints (clients and schemathesis follow them)."""

from __future__ import annotations

from typing import Any

from ninja import NinjaAPI
from ninja.operation import Operation as NinjaOperation

from batches.operations import all_operations

_FOLLOW_BATCH = {
    "get_batch": "GetBatch",
    "cancel": "CancelBatch",
    "failures": "ListFailures",
    "report": "GetReport",
    "retry_failed_items": "RetryFailedItems",
}


class BatchesAPI(NinjaAPI):
    def get_openapi_operation_id(self, operation: NinjaOperation) -> str:
        return operation.view_func.__name__

    def get_openapi_schema(self, **kwargs: Any) -> Any:
        schema = super().get_openapi_schema(**kwargs)
        schema["components"]["schemas"]["StartIn"]["oneOf"] = [
            {
                "type": "object",
                "properties": {"operation": {"const": op.name}, "params": op.params_schema},
                "required": ["operation", "params"],
            }
            for op in all_operations()
        ]
        links = {
            link: {"operationId": operation_id, "parameters": {"batch_id": "$response.body#/id"}}
            for operation_id, link in _FOLLOW_BATCH.items()
        }
        for path in schema["paths"].values():
            for operation in path.values():
                if operation.get("operationId") in {"create_batch", "retry_failed_items"}:
                    operation["responses"][202]["links"] = links
        return schema
