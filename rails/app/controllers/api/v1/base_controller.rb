class Api::V1::BaseController < ApplicationController
  rescue_from ActiveRecord::RecordNotFound, with: :render_not_found

  private

    def render_not_found
      render json: { error: "Not Found" }, status: :not_found
    end
end
